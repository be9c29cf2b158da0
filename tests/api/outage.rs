//! A database outage loses nothing: a call's writes go to the spool under `VG_DATA_DIR` while
//! PostgreSQL cannot take them, and are replayed when it returns, or at the next start after a
//! SIGTERM during the outage. The outage is a TCP proxy in front of the test's database that
//! drops every connection and refuses new ones, as a database that went away does.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use voice_gateway::simulators::{
    openai_realtime::{FakeRealtimeConfig, FakeRealtimeServer, FakeTurn},
    plivo_caller::{self, Gate, Step},
};

use crate::{
    helpers::{TestApp, TestDb, cluster, settings_for},
    restart::{
        AUTH_TOKEN, DEADLINE, caller, lead_status, listening, spawn_binary_at, terminate,
        total_calls, world,
    },
    serve::wait_for_log,
};

/// A loopback TCP proxy to the test cluster that can cut the database off: every connection
/// through it is dropped and the port stops listening (connections are refused), as when
/// PostgreSQL stops; restored, it listens again on the same port.
struct DbProxy {
    port: u16,
    up: Arc<watch::Sender<bool>>,
}

impl DbProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = cluster().port();
        let up = Arc::new(watch::Sender::new(true));
        let mut state = up.subscribe();
        let sender = up.clone();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let Some(open) = &listener else {
                    if state.wait_for(|up| *up).await.is_err() {
                        return;
                    }
                    listener = Some(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
                    continue;
                };
                tokio::select! {
                    accepted = open.accept() => {
                        let Ok((mut client, _)) = accepted else { return };
                        let mut down = sender.subscribe();
                        tokio::spawn(async move {
                            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = down.wait_for(|up| !*up) => {}
                            }
                        });
                    }
                    changed = state.wait_for(|up| !*up) => {
                        let gone = changed.is_err();
                        drop(changed);
                        if gone {
                            return;
                        }
                        listener = None;
                    }
                }
            }
        });
        Self { port, up }
    }

    /// `url` (a database of the test cluster) through the proxy.
    fn url(&self, url: &str) -> String {
        url.replace(
            &format!(":{}/", cluster().port()),
            &format!(":{}/", self.port),
        )
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

async fn events_of(test: &TestDb, call_sid: &str) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT e.seq, e.kind FROM call_events e JOIN call_logs c ON c.id = e.call_log_id
         WHERE c.call_sid = $1 ORDER BY e.seq",
    )
    .bind(call_sid)
    .fetch_all(test.pool())
    .await
    .unwrap()
}

async fn agent_lines(test: &TestDb, call_sid: &str) -> usize {
    events_of(test, call_sid)
        .await
        .iter()
        .filter(|(_, kind)| kind == "agent_speech")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_during_an_outage_is_spooled_and_replayed_when_the_database_returns() {
    let (test, org, unused, _dir) = world().await;
    unused.stop().await;
    let fake = FakeRealtimeServer::start(FakeRealtimeConfig {
        turns: vec![FakeTurn {
            caller_says: "When can I see the flat?".to_owned(),
            agent_says: "Tomorrow at ten works.".to_owned(),
            tool: None,
        }],
        ..FakeRealtimeConfig::default()
    })
    .await
    .unwrap();
    let proxy = DbProxy::start().await;
    let realtime = fake.url();
    let app = TestApp::spawn(settings_for(
        &proxy.url(&test.url),
        "gw-outage",
        &[
            ("OPENAI_REALTIME_URL", &realtime),
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_DIALER_ENABLED", "false"),
        ],
    ))
    .await;
    let spool = app
        .spool
        .clone()
        .expect("a spool in the test's data directory");
    let gate = Gate::default();
    let config = caller(&app.address.to_string(), &org, 0, "CA-outage");
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::WaitForGate(gate.clone()),
        Step::Speak(Duration::from_millis(800)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(Duration::from_millis(300)),
        Step::HangUp,
    ];
    let call = tokio::spawn(async move {
        plivo_caller::place_call(&config, &reqwest::Client::new(), &script).await
    });
    crate::campaign_api::wait_until("the greeting on record", DEADLINE, || async {
        agent_lines(&test, "CA-outage").await == 1
    })
    .await;

    proxy.cut();
    gate.open();
    let report = call
        .await
        .unwrap()
        .expect("the call runs through the outage");
    assert!(
        report.frames.len() > 100,
        "the caller heard the agent's reply during the outage"
    );
    let mut pending = spool.pending();
    tokio::time::timeout(DEADLINE, pending.wait_for(|files| *files == 1))
        .await
        .expect("the call's writes are sealed in the spool")
        .unwrap();
    let row = test.db.call_log("CA-outage").await.unwrap().unwrap();
    assert_eq!(row.ended_at, None, "nothing reached the database");
    assert_eq!(agent_lines(&test, "CA-outage").await, 1);

    proxy.restore();
    tokio::time::timeout(DEADLINE, pending.wait_for(|files| *files == 0))
        .await
        .expect("the spool is replayed once the database is back")
        .unwrap();
    let row = test.db.call_log("CA-outage").await.unwrap().unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("caller_hangup"));
    let kinds: Vec<String> = events_of(&test, "CA-outage")
        .await
        .into_iter()
        .map(|(_, kind)| kind)
        .collect();
    assert!(
        kinds.contains(&"caller_speech".to_owned()) && agent_lines(&test, "CA-outage").await == 2,
        "what was said during the outage is kept: {kinds:?}"
    );
    let transcript = row.transcript.unwrap_or_default();
    assert!(transcript.contains("Caller:"), "{transcript}");
    assert_eq!(total_calls(&test, &org).await, 1, "counted once");
    assert_eq!(lead_status(&test, org.lead_ids[0]).await.0, "contacted");
    assert_eq!(spool.used_bytes(), 0);
    app.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_keeps_the_spool_and_the_next_start_replays_it_first() {
    let (test, org, fake, dir) = world().await;
    let proxy = DbProxy::start().await;
    let url = proxy.url(&test.url);
    let data_dir = dir.path().to_str().unwrap();
    let mut child = spawn_binary_at(&url, &fake, "gw-term", data_dir);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = listening(&mut lines).await;
    let config = caller(&address, &org, 0, "CA-term");
    let call = tokio::spawn(async move {
        let script = [
            Step::WaitForAgentAudio,
            Step::WaitForAgentSilence(Duration::from_millis(300)),
            Step::WaitForClose,
        ];
        let _ = plivo_caller::place_call(&config, &reqwest::Client::new(), &script).await;
    });
    crate::campaign_api::wait_until("the greeting on record", DEADLINE, || async {
        agent_lines(&test, "CA-term").await == 1
    })
    .await;

    proxy.cut();
    terminate(child, &mut lines).await;
    call.await.unwrap();
    let spooled: Vec<_> = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".ready"))
        .collect();
    assert_eq!(spooled.len(), 1, "the close waits on disk: {spooled:?}");
    let row = test.db.call_log("CA-term").await.unwrap().unwrap();
    assert_eq!(row.ended_at, None);

    proxy.restore();
    let mut child = spawn_binary_at(&url, &fake, "gw-term", data_dir);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let replayed = wait_for_log(&mut lines, "spooled call writes replayed").await;
    assert_eq!(replayed["files"], 1, "{replayed}");
    listening(&mut lines).await;
    let row = test.db.call_log("CA-term").await.unwrap().unwrap();
    assert_eq!(
        row.end_reason.as_deref(),
        Some("shutdown"),
        "the spooled close stands, not a gateway_restart"
    );
    assert_eq!(total_calls(&test, &org).await, 1);
    terminate(child, &mut lines).await;
    fake.stop().await;
}

fn spool_files(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_database_returns_writes_its_spooled_lines_while_it_goes_on() {
    let (test, org, unused, _dir) = world().await;
    unused.stop().await;
    let turn = |caller: &str, agent: &str| FakeTurn {
        caller_says: caller.to_owned(),
        agent_says: agent.to_owned(),
        tool: None,
    };
    let fake = FakeRealtimeServer::start(FakeRealtimeConfig {
        turns: vec![
            turn("Is parking included?", "Yes, one space per flat."),
            turn("And a storage room?", "Every flat has one."),
            turn("Thank you.", "You're welcome."),
        ],
        ..FakeRealtimeConfig::default()
    })
    .await
    .unwrap();
    let proxy = DbProxy::start().await;
    let realtime = fake.url();
    let app = TestApp::spawn(settings_for(
        &proxy.url(&test.url),
        "gw-back",
        &[
            ("OPENAI_REALTIME_URL", &realtime),
            ("PLIVO_AUTH_ID", "MATEST"),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VG_DIALER_ENABLED", "false"),
        ],
    ))
    .await;
    let spool = app.spool.clone().expect("a spool");
    let (outage, back, end) = (Gate::default(), Gate::default(), Gate::default());
    let config = caller(&app.address.to_string(), &org, 0, "CA-back");
    let quiet = Duration::from_millis(300);
    let script = [
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(quiet),
        Step::WaitForGate(outage.clone()),
        Step::Speak(Duration::from_millis(800)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(quiet),
        Step::WaitForGate(back.clone()),
        Step::Speak(Duration::from_millis(800)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(quiet),
        Step::Speak(Duration::from_millis(800)),
        Step::WaitForAgentAudio,
        Step::WaitForAgentSilence(quiet),
        Step::WaitForGate(end.clone()),
        Step::HangUp,
    ];
    let call = tokio::spawn(async move {
        plivo_caller::place_call(&config, &reqwest::Client::new(), &script).await
    });
    crate::campaign_api::wait_until("the greeting on record", DEADLINE, || async {
        agent_lines(&test, "CA-back").await == 1
    })
    .await;

    proxy.cut();
    outage.open();
    crate::campaign_api::wait_until("the call's writes in its spool", DEADLINE, || async {
        spool_files(spool.dir(), ".open") == 1
    })
    .await;
    proxy.restore();
    back.open();
    crate::campaign_api::wait_until(
        "the outage's lines in the database while the call goes on",
        DEADLINE,
        || async {
            events_of(&test, "CA-back")
                .await
                .iter()
                .any(|(_, kind)| kind == "caller_speech")
        },
    )
    .await;
    crate::campaign_api::wait_until("its spool file gone", DEADLINE, || async {
        spool_files(spool.dir(), ".open") == 0
    })
    .await;
    let row = test.db.call_log("CA-back").await.unwrap().unwrap();
    assert_eq!(row.ended_at, None, "the call is still live");

    end.open();
    call.await.unwrap().expect("the call ends normally");
    crate::campaign_api::wait_until("the close", DEADLINE, || async {
        test.db
            .call_log("CA-back")
            .await
            .unwrap()
            .is_some_and(|row| row.ended_at.is_some())
    })
    .await;
    assert_eq!(
        agent_lines(&test, "CA-back").await,
        4,
        "greeting and three replies"
    );
    assert_eq!(
        *spool.pending().borrow(),
        0,
        "nothing left for the replayer"
    );
    assert_eq!(total_calls(&test, &org).await, 1);
    app.shutdown().await;
    fake.stop().await;
}

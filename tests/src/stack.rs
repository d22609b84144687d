//! The whole stack on loopback: the sandbox, a key set server, payments-grpc
//! and edge-gateway (in process, on ephemeral ports, each restartable), over a
//! fresh database.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use payments_grpc::testing::RunningGrpc;
use payments_test_support::TestDatabase;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use stripe_sandbox::{Sandbox, SandboxConfig, WebhookTarget};

pub use payments_devtools::http::HttpClient;
pub use payments_devtools::local::{
    ADMIN_TOKEN, INTERNAL_TOKEN, PROJECT_ID, STRIPE_SECRET_KEY, WEBHOOK_SECRET, serve_key_set,
};
pub use service_runtime::now_unix;

/// A server binary built beside the test binary (tests run from
/// target/<profile>/deps, the servers are in target/<profile>), or in
/// `SERVER_BIN_DIR` when set (e.g. target/release, to attack release builds).
pub fn server_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = match std::env::var_os("SERVER_BIN_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory")
            .to_path_buf(),
    };
    let binary = dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        binary.display()
    );
    binary
}

/// The edge's configuration in this stack: its defaults, pointed at the
/// stack's key set and payments-grpc.
pub fn edge_config(keys_url: &str, grpc_addr: SocketAddr) -> edge_gateway::config::Config {
    let mut config = edge_gateway::config::Config::defaults();
    config.payments_grpc_url = format!("http://{grpc_addr}");
    config.payments_internal_token = Some(INTERNAL_TOKEN.into());
    config.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
    config.firebase_project_id = Some(PROJECT_ID.into());
    config.firebase_jwks_url = keys_url.to_owned();
    // The end-to-end tests create many intents for few users from one IP.
    config.rate_limit_creates_per_minute = 10_000;
    config.rate_limit_creates_per_minute_per_ip = 10_000;
    config
}

/// payments-grpc, in this process or as the real binary.
enum GrpcServer {
    InProcess(RunningGrpc),
    Process(tokio::process::Child),
}

/// A server task that stops when asked and is awaited to the end.
struct Running {
    stop: oneshot::Sender<()>,
    done: JoinHandle<()>,
    metrics_addr: SocketAddr,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

pub struct Stack {
    pub db: TestDatabase,
    pub sandbox: Sandbox,
    pub grpc_addr: SocketAddr,
    pub edge_addr: SocketAddr,
    keys_url: String,
    grpc: Option<GrpcServer>,
    grpc_as_process: bool,
    /// `RUST_LOG` of the payments-grpc process.
    pub grpc_log_filter: &'static str,
    edge: Option<Running>,
    pub http: HttpClient,
}

/// Another payments-grpc + edge-gateway pair on the same database and sandbox.
pub struct Replica {
    pub edge_url: String,
    _grpc: RunningGrpc,
    _edge: Running,
}

impl Stack {
    pub async fn start(sandbox_config: SandboxConfig) -> Self {
        Self::start_with(sandbox_config, false).await
    }

    /// payments-grpc runs as the real binary (built beside the test binary),
    /// so that it can be killed with SIGKILL.
    pub async fn start_with_grpc_process(sandbox_config: SandboxConfig) -> Self {
        Self::start_with(sandbox_config, true).await
    }

    /// Everything on the Postgres server at `server_url` (e.g. a throwaway cluster).
    pub async fn start_on(server_url: &str, sandbox_config: SandboxConfig) -> Self {
        Self::start_with_db(
            TestDatabase::create_on(server_url).await,
            sandbox_config,
            false,
        )
        .await
    }

    async fn start_with(sandbox_config: SandboxConfig, grpc_as_process: bool) -> Self {
        Self::start_with_db(
            TestDatabase::create().await,
            sandbox_config,
            grpc_as_process,
        )
        .await
    }

    async fn start_with_db(
        db: TestDatabase,
        sandbox_config: SandboxConfig,
        grpc_as_process: bool,
    ) -> Self {
        let edge_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
        let edge_addr = edge_listener.local_addr().expect("edge addr");
        let sandbox = Sandbox::start(
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind sandbox"),
            SandboxConfig {
                webhook: Some(WebhookTarget {
                    url: format!("http://{edge_addr}/stripe/webhook"),
                    secret: WEBHOOK_SECRET.into(),
                }),
                ..sandbox_config
            },
        )
        .await;
        let keys_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind keys");
        let keys_url = format!(
            "http://{}/jwks.json",
            keys_listener.local_addr().expect("keys addr")
        );
        serve_key_set(keys_listener).await;
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let grpc_addr = grpc_listener.local_addr().expect("grpc addr");
        let mut stack = Self {
            db,
            sandbox,
            grpc_addr,
            edge_addr,
            keys_url,
            grpc: None,
            grpc_as_process,
            grpc_log_filter: "warn",
            edge: None,
            http: HttpClient::new(),
        };
        stack.grpc = Some(if grpc_as_process {
            drop(grpc_listener);
            GrpcServer::Process(stack.run_grpc_process())
        } else {
            GrpcServer::InProcess(stack.run_grpc(grpc_listener).await)
        });
        stack.edge = Some(stack.run_edge(edge_listener));
        stack
    }

    /// Resolves once the edge reports payments-grpc ready (30 s at most).
    pub async fn wait_ready(&self) {
        self.wait_readiness(200).await;
    }

    /// Resolves once `GET /readyz` answers `status` (30 s at most).
    pub async fn wait_readiness(&self, status: u16) {
        let url = format!("{}/readyz", self.edge_url());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.http.try_send("GET", &url, None, &[], Vec::new()).await;
            if matches!(answer, Ok((answered, _)) if answered == status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz did not answer {status} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn edge_url(&self) -> String {
        format!("http://{}", self.edge_addr)
    }

    /// payments-grpc's configuration in this stack: the test defaults,
    /// pointed at the stack's database and sandbox.
    pub fn grpc_config(&self) -> payments_grpc::config::Config {
        let mut config =
            payments_grpc::testing::config(&self.db.url, &self.sandbox.url(), INTERNAL_TOKEN);
        config.stripe_secret_key = Some(STRIPE_SECRET_KEY.into());
        config.stripe_timeout_ms = 4_500;
        config.stripe_deadline_ms = 9_000;
        config.stripe_retry_backoff_ms = 50;
        // The end-to-end tests leave many intents unpaid for few users.
        config.max_open_intents_per_user = 1000;
        config.payments_admin_token = Some(ADMIN_TOKEN.into());
        // Passes run when a test asks (`reconcile`), not on a clock.
        config.reconcile_interval_secs = 0;
        config
    }

    async fn run_grpc(&self, listener: TcpListener) -> RunningGrpc {
        RunningGrpc::start_on(self.grpc_config(), listener).await
    }

    fn run_grpc_process(&self) -> tokio::process::Child {
        self.spawn_grpc_process(&[])
    }

    /// The real payments-grpc binary on this stack's gRPC address, with
    /// `extra` settings added to the stack's own.
    pub fn spawn_grpc_process(&self, extra: &[(&str, &str)]) -> tokio::process::Child {
        let binary = server_binary("payments-grpc");
        let log = self.grpc_log_path();
        let sandbox_url = self.sandbox.url();
        let grpc_addr = self.grpc_addr.to_string();
        let mut env = vec![
            ("DATABASE_URL", self.db.url.as_str()),
            ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY),
            ("STRIPE_API_BASE", &sandbox_url),
            ("PAYMENTS_GRPC_ADDR", &grpc_addr),
            ("PAYMENTS_METRICS_ADDR", "127.0.0.1:0"),
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
            ("DATABASE_POOL_SIZE", "4"),
            ("MAX_OPEN_INTENTS_PER_USER", "1000"),
            ("PAYMENTS_ADMIN_TOKEN", ADMIN_TOKEN),
            ("RECONCILE_INTERVAL_SECS", "0"),
            ("RUST_LOG", self.grpc_log_filter),
        ];
        env.extend_from_slice(extra);
        crate::process::spawn_server(&binary, &log, &env).expect("start payments-grpc")
    }

    /// The real edge-gateway binary in front of this stack's payments-grpc,
    /// on a port of its own, with `extra` settings, under `prlimit` with
    /// `max_files` descriptors when given; resolves once it answers.
    pub async fn spawn_edge_process(
        &self,
        extra: &[(&str, &str)],
        max_files: Option<u32>,
    ) -> (tokio::process::Child, SocketAddr) {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr")
        };
        let grpc_url = format!("http://{}", self.grpc_addr);
        let edge_addr = addr.to_string();
        let mut env = vec![
            ("EDGE_ADDR", edge_addr.as_str()),
            ("EDGE_METRICS_ADDR", "127.0.0.1:0"),
            ("PAYMENTS_GRPC_URL", &grpc_url),
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("FIREBASE_PROJECT_ID", PROJECT_ID),
            ("FIREBASE_JWKS_URL", &self.keys_url),
            ("RUST_LOG", "warn"),
        ];
        env.extend_from_slice(extra);
        let log = server_binary("edge-gateway")
            .with_file_name(format!("edge-gateway-{}.log", addr.port()));
        let binary = server_binary("edge-gateway");
        let child = match max_files {
            Some(n) => crate::process::spawn_command(
                Path::new("/usr/bin/prlimit"),
                &[
                    &format!("--nofile={n}:{n}"),
                    "--",
                    binary.to_str().expect("utf-8 path"),
                ],
                &log,
                &env,
            ),
            None => crate::process::spawn_server(&binary, &log, &env),
        }
        .expect("start edge-gateway");
        let url = format!("http://{addr}/healthz");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !matches!(
            self.http.try_send("GET", &url, None, &[], Vec::new()).await,
            Ok((200, _))
        ) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "edge-gateway did not start: see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (child, addr)
    }

    /// Where the payments-grpc process writes its log.
    pub fn grpc_log_path(&self) -> std::path::PathBuf {
        let exe = std::env::current_exe().expect("test binary");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory");
        dir.join(format!("payments-grpc-{}.log", self.grpc_addr.port()))
    }

    /// The pid of payments-grpc when it runs as a process.
    pub fn grpc_pid(&self) -> Option<u32> {
        match &self.grpc {
            Some(GrpcServer::Process(child)) => child.id(),
            _ => None,
        }
    }

    /// SIGKILL: payments-grpc dies wherever it is, mid-transaction included.
    pub async fn crash_grpc(&mut self) {
        match self.grpc.take() {
            Some(GrpcServer::Process(mut child)) => {
                child.kill().await.expect("SIGKILL payments-grpc");
            }
            Some(GrpcServer::InProcess(_)) => panic!("crash_grpc needs start_with_grpc_process"),
            None => {}
        }
    }

    /// Starts another payments-grpc and edge-gateway on the same database and sandbox.
    pub async fn start_replica(&self) -> Replica {
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let grpc_addr = grpc_listener.local_addr().expect("grpc addr");
        let grpc = self.run_grpc(grpc_listener).await;
        let edge_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
        let edge_url = format!("http://{}", edge_listener.local_addr().expect("edge addr"));
        let edge = self.run_edge_to(edge_listener, grpc_addr);
        Replica {
            edge_url,
            _grpc: grpc,
            _edge: edge,
        }
    }

    fn run_edge(&self, listener: TcpListener) -> Running {
        self.run_edge_to(listener, self.grpc_addr)
    }

    fn run_edge_to(&self, listener: TcpListener, grpc_addr: SocketAddr) -> Running {
        let application =
            edge_gateway::Application::build_on(edge_config(&self.keys_url, grpc_addr), listener)
                .expect("edge configuration");
        let metrics_addr = application.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        Running {
            stop,
            done,
            metrics_addr,
        }
    }

    /// Stops payments-grpc gracefully (SIGTERM for the process).
    pub async fn stop_grpc(&mut self) {
        match self.grpc.take() {
            Some(GrpcServer::InProcess(mut running)) => running.stop().await,
            Some(GrpcServer::Process(mut child)) => {
                crate::process::stop_gracefully(&mut child).await
            }
            None => {}
        }
    }

    /// Starts payments-grpc again on its address.
    pub async fn start_grpc(&mut self) {
        self.grpc = Some(if self.grpc_as_process {
            GrpcServer::Process(self.run_grpc_process())
        } else {
            let listener = TcpListener::bind(self.grpc_addr)
                .await
                .expect("rebind grpc");
            GrpcServer::InProcess(self.run_grpc(listener).await)
        });
    }

    /// Stops both servers and starts them again, on the same addresses.
    pub async fn restart(&mut self) {
        if let Some(edge) = self.edge.take() {
            edge.stop().await;
        }
        self.stop_grpc().await;
        self.start_grpc().await;
        let listener = TcpListener::bind(self.edge_addr)
            .await
            .expect("rebind edge");
        self.edge = Some(self.run_edge(listener));
    }
}

mod calls;

/// `AdminService.RunReconciliation` on the payments-grpc at `grpc_addr`.
pub async fn run_reconciliation(
    grpc_addr: SocketAddr,
) -> Result<payments_proto::RunReconciliationResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
        .expect("a URL")
        .connect()
        .await
        .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
    let mut admin = payments_proto::admin_service_client::AdminServiceClient::new(channel);
    let mut request = tonic::Request::new(payments_proto::RunReconciliationRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().expect("ASCII"),
    );
    Ok(admin.run_reconciliation(request).await?.into_inner())
}

//! `fhec serve`: an HTTP service that runs models' server files on clients' ciphertexts
//! (`docs/deployment.md`, API in `docs/openapi.yaml`).
//!
//! * Models: server files (with their client files beside them, served to clients), by name.
//! * Keys: clients upload evaluation keys; they are stored on disk by model and key id (written
//!   atomically; a different file under an existing key id is refused, so nobody can replace someone
//!   else's keys) and expanded on first use into an in-memory LRU cache with a byte budget. The service
//!   never receives a secret key: the reader refuses any file but evaluation keys.
//! * Runs: a bounded number run at once (each on every core), a bounded number wait; beyond that a run
//!   is answered 503 with `Retry-After`. A run past the timeout is cancelled (504). The program's
//!   resource [`Limits`] apply to every batch.
//! * Errors: JSON `{"error": KIND, "message": …}` with a 4xx for everything a client sends wrong; the
//!   service stays healthy after any of them.
//! * Metrics: Prometheus text at `/metrics` (requests by endpoint and status, latency histograms,
//!   lookups run, key-cache hits, misses and bytes, queue depth).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use fhec_runtime::io::{self as rio, FileKind};
use fhec_runtime::{Limits, Program, Progress};

use crate::error::{Error, ErrorKind};
use crate::model::{ClientModel, ModelInfo, ServerModel};
use crate::Server;

/// What `fhec serve` runs with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Server files, or directories whose `*.server.fhec` files are all served.
    pub models: Vec<PathBuf>,
    /// Where uploaded evaluation keys are stored (`DIR/MODEL/KEYID.eval.keys`).
    pub key_dir: PathBuf,
    /// Budget of the in-memory cache of expanded keys.
    pub cache_bytes: usize,
    /// Largest request body (an evaluation-key file or a batch of ciphertexts).
    pub max_body_bytes: usize,
    /// Runs at once (each uses every core).
    pub jobs: usize,
    /// Runs that may wait for one of the `jobs`; beyond `jobs + queue` runs at once: 503 with
    /// `Retry-After`.
    pub queue: usize,
    /// A run is cancelled after this long (504).
    pub timeout: Duration,
    /// The resource policy every program and batch is checked against.
    pub limits: Limits,
}

impl ServeConfig {
    pub fn new(models: Vec<PathBuf>, key_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            models,
            key_dir,
            cache_bytes: 4 << 30,
            max_body_bytes: 1 << 30,
            jobs: 1,
            queue: 16,
            timeout: Duration::from_secs(600),
            limits: Limits::default(),
        }
    }
}

struct Model {
    info: ModelInfo,
    program: Arc<Program>,
    client_file: Option<Bytes>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    lookups: Counter,
    samples: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_bytes: Gauge,
    queue_depth: Gauge,
    running: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fhec");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "HTTP requests by endpoint and status", requests.clone());
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 20))
        });
        registry.register("request_seconds", "Request latency by endpoint", latency.clone());
        let lookups = Counter::default();
        registry.register(
            "lookups",
            "Table lookups run (lookups per sample × samples)",
            lookups.clone(),
        );
        let samples = Counter::default();
        registry.register("samples", "Samples run", samples.clone());
        let cache_hits = Counter::default();
        registry.register(
            "key_cache_hits",
            "Runs whose expanded keys were cached",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "key_cache_misses",
            "Runs that read and expanded their keys",
            cache_misses.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "key_cache_bytes",
            "Bytes of expanded keys in the cache",
            cache_bytes.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Runs waiting for a job slot", queue_depth.clone());
        let running = Gauge::default();
        registry.register("running_jobs", "Runs in progress", running.clone());
        Metrics {
            registry,
            requests,
            latency,
            lookups,
            samples,
            cache_hits,
            cache_misses,
            cache_bytes,
            queue_depth,
            running,
        }
    }

    fn observe(&self, endpoint: &str, status: StatusCode, started: Instant) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_string(),
                status: status.as_u16(),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Expanded keys by (model, key id), least recently used first out, within a byte budget (an entry
/// larger than the whole budget stays alone until the next insertion).
struct KeyCache<T> {
    budget: usize,
    used: usize,
    tick: u64,
    /// value, last use, bytes
    entries: HashMap<(String, u64), (Arc<T>, u64, usize)>,
}

impl<T> KeyCache<T> {
    fn new(budget: usize) -> KeyCache<T> {
        KeyCache {
            budget,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    fn get(&mut self, k: &(String, u64)) -> Option<Arc<T>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(k).map(|(s, t, _)| {
            *t = tick;
            s.clone()
        })
    }

    /// Inserts, then evicts the least recently used entries (never the new one) until within budget.
    fn insert(&mut self, k: (String, u64), s: Arc<T>, bytes: usize) {
        self.tick += 1;
        self.used += bytes;
        if let Some((_, _, old)) = self.entries.insert(k.clone(), (s, self.tick, bytes)) {
            self.used -= old;
        }
        while self.used > self.budget && self.entries.len() > 1 {
            let oldest = self
                .entries
                .iter()
                .filter(|(key, _)| **key != k)
                .min_by_key(|(_, (_, t, _))| *t)
                .map(|(key, _)| key.clone());
            match oldest.and_then(|key| self.entries.remove(&key)) {
                Some((_, _, b)) => self.used -= b,
                None => break,
            }
        }
    }
}

struct AppState {
    cfg: ServeConfig,
    models: BTreeMap<String, Model>,
    cache: Mutex<KeyCache<Server>>,
    /// Serialises loading of one key set: concurrent first runs expand it once.
    loading: tokio::sync::Mutex<()>,
    /// Serialises the key store's check-and-write.
    store: Mutex<()>,
    jobs: Semaphore,
    admitted: AtomicUsize,
    metrics: Metrics,
}

/// An error answer: status, kind, message (as JSON).
struct Failure {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match e.kind() {
            ErrorKind::Limit => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Cancelled => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Io => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Failure::new(status, e.kind().name(), e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.kind, "message": self.message});
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type Answer = Result<Response, Failure>;

/// Loads every server file (and its client file, when present beside it).
fn load_models(paths: &[PathBuf], limits: &Limits) -> Result<BTreeMap<String, Model>, Error> {
    let io = |p: &Path, e: std::io::Error| Error::new(ErrorKind::Io, format!("{}: {e}", p.display()));
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.to_string_lossy().ends_with(".server.fhec"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err(Error::new(ErrorKind::Io, "no server files (NAME.server.fhec) to serve"));
    }
    let mut models = BTreeMap::new();
    for f in files {
        let at = |e: Error| Error::new(e.kind(), format!("{}: {e}", f.display()));
        let bytes = std::fs::read(&f).map_err(|e| io(&f, e))?;
        let m = ServerModel::from_bytes(&bytes).map_err(at)?;
        limits.check_program(&m.program).map_err(|e| at(e.into()))?;
        let name = m.info.name.clone();
        let client_path = f.with_file_name(format!("{name}.client.fhec"));
        let client_file = match std::fs::read(&client_path) {
            Ok(b) => {
                let c = ClientModel::from_bytes(&b)
                    .map_err(|e| Error::new(e.kind(), format!("{}: {e}", client_path.display())))?;
                if !c.matches(&m) {
                    return Err(Error::new(
                        ErrorKind::Mismatch,
                        format!("{}: not the client file of {}", client_path.display(), f.display()),
                    ));
                }
                Some(Bytes::from(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&client_path, e)),
        };
        if models.contains_key(&name) {
            return Err(Error::new(
                ErrorKind::Mismatch,
                format!("two server files name their model `{name}`"),
            ));
        }
        models.insert(
            name,
            Model {
                info: m.info,
                program: Arc::new(m.program),
                client_file,
            },
        );
    }
    Ok(models)
}

/// The service's routes over loaded models (what [`serve`] listens with; tests call it directly).
pub fn router(cfg: ServeConfig) -> Result<Router, Error> {
    Ok(build(cfg)?.0)
}

fn build(cfg: ServeConfig) -> Result<(Router, Vec<String>), Error> {
    let models = load_models(&cfg.models, &cfg.limits)?;
    let names: Vec<String> = models.keys().cloned().collect();
    std::fs::create_dir_all(&cfg.key_dir)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", cfg.key_dir.display())))?;
    let state = Arc::new(AppState {
        cache: Mutex::new(KeyCache::new(cfg.cache_bytes)),
        loading: tokio::sync::Mutex::new(()),
        store: Mutex::new(()),
        jobs: Semaphore::new(cfg.jobs.max(1)),
        admitted: AtomicUsize::new(0),
        metrics: Metrics::new(),
        models,
        cfg,
    });
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}/client", get(client_file))
        .route("/v1/models/{name}/keys", post(upload_keys))
        .route("/v1/models/{name}/run", post(run))
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    Ok((router, names))
}

/// Serves until `shutdown` resolves, then finishes the requests in progress. `ready` gets the
/// address listened on (useful with port 0).
pub async fn serve(
    cfg: ServeConfig,
    listen: SocketAddr,
    ready: impl FnOnce(SocketAddr, &[String]),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (app, names) = build(cfg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
    ready(addr, &names);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
}

fn model<'a>(state: &'a AppState, name: &str) -> Result<&'a Model, Failure> {
    state.models.get(name).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            "unknown_model",
            format!(
                "no model `{name}` here (models: {})",
                state.models.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// The request body, at most `max_body_bytes`.
async fn body(state: &AppState, b: Body) -> Result<Bytes, Failure> {
    to_bytes(b, state.cfg.max_body_bytes).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .map(|s| s.to_string().contains("length limit"))
            .unwrap_or(false)
            || e.to_string().contains("length limit");
        if too_large {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is over {} bytes", state.cfg.max_body_bytes),
            )
        } else {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "body",
                format!("cannot read the request body: {e}"),
            )
        }
    })
}

fn finish(state: &AppState, endpoint: &str, started: Instant, answer: Answer) -> Response {
    let r = answer.unwrap_or_else(IntoResponse::into_response);
    state.metrics.observe(endpoint, r.status(), started);
    r
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let started = Instant::now();
    let r = Json(serde_json::json!({"status": "ok", "models": state.models.len()})).into_response();
    finish(&state, "healthz", started, Ok(r))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = String::new();
    let r = match prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry) {
        Ok(()) => Ok((
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()),
        Err(e) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            e.to_string(),
        )),
    };
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let started = Instant::now();
    let list: Vec<serde_json::Value> = state
        .models
        .iter()
        .map(|(name, m)| {
            let (compressed, expanded) = fhec_runtime::keys::program_key_bytes(&m.program);
            serde_json::json!({
                "name": name,
                "kind": m.info.kind,
                "fhec_version": m.info.fhec_version,
                "fingerprint": format!("{:016x}", m.program.fingerprint()),
                "lookups": m.program.pbs_count(),
                "parameters": m.program.params_summary(),
                "log2_p_error_per_lookup": m.program.noise.log2_p_error_worst_lookup,
                "evaluation_key_bytes": compressed,
                "server_key_bytes": expanded,
                "client_file": m.client_file.is_some(),
            })
        })
        .collect();
    finish(&state, "models", started, Ok(Json(list).into_response()))
}

async fn client_file(State(state): State<Arc<AppState>>, UrlPath(name): UrlPath<String>) -> Response {
    let started = Instant::now();
    let answer = model(&state, &name).and_then(|m| match &m.client_file {
        Some(b) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], b.clone()).into_response()),
        None => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "no_client_file",
            format!("model `{name}` is served without its client file ({name}.client.fhec)"),
        )),
    });
    finish(&state, "client", started, answer)
}

fn key_path(state: &AppState, name: &str, key_id: u64) -> PathBuf {
    state.cfg.key_dir.join(name).join(format!("{key_id:016x}.eval.keys"))
}

async fn upload_keys(State(state): State<Arc<AppState>>, UrlPath(name): UrlPath<String>, b: Body) -> Response {
    let started = Instant::now();
    let answer = async {
        let m = model(&state, &name)?;
        let bytes = body(&state, b).await?;
        let program = m.program.clone();
        let store = state.clone();
        let dir_name = name.clone();
        // parse, check and store off the async threads (tens of MB), under the store's lock: two
        // uploads under one key id cannot both write
        let (key_id, created) = tokio::task::spawn_blocking(move || -> Result<(u64, bool), Failure> {
            if rio::file_kind(&bytes) == Some(FileKind::ClientKeys) {
                return Err(Error::new(
                    ErrorKind::Security,
                    "this is a secret-key file: never send it anywhere; upload the evaluation keys",
                )
                .into());
            }
            let k = rio::evaluation_keys_from_bytes(&bytes).map_err(Error::from)?;
            if k.check_interface(&program.interface()).is_err() {
                return Err(Error::new(
                    ErrorKind::Mismatch,
                    "these evaluation keys are for other parameters than the model: generate keys from its client file",
                )
                .into());
            }
            let key_id = k.key_id();
            let io = |e: String| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e);
            let _store = store.store.lock().unwrap_or_else(|e| e.into_inner());
            let path = key_path(&store, &dir_name, key_id);
            match std::fs::read(&path) {
                Ok(existing) if existing == bytes.as_ref() => Ok((key_id, false)),
                Ok(_) => Err(Failure::new(
                    StatusCode::CONFLICT,
                    "key_conflict",
                    format!("other evaluation keys are stored under key id {key_id:016x}: generate new keys"),
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let dir = path.parent().expect("a key path has a directory");
                    std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
                    crate::io::write_atomic(&path, &bytes).map_err(|e| io(e.to_string()))?;
                    Ok((key_id, true))
                }
                Err(e) => Err(io(e.to_string())),
            }
        })
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((
            status,
            Json(serde_json::json!({"key_id": format!("{key_id:016x}"), "stored": created})),
        )
            .into_response())
    }
    .await;
    finish(&state, "keys", started, answer)
}

/// The server (program + expanded keys) of a model's key id: cached, else read and expanded.
async fn server_for(state: &Arc<AppState>, name: &str, key_id: u64) -> Result<Arc<Server>, Failure> {
    let k = (name.to_string(), key_id);
    if let Some(s) = state.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&k) {
        state.metrics.cache_hits.inc();
        return Ok(s);
    }
    let _loading = state.loading.lock().await;
    if let Some(s) = state.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&k) {
        state.metrics.cache_hits.inc();
        return Ok(s);
    }
    state.metrics.cache_misses.inc();
    let path = key_path(state, name, key_id);
    let program = state.models[name].program.clone();
    let limits = state.cfg.limits;
    let model = name.to_string();
    let server = tokio::task::spawn_blocking(move || -> Result<Server, Failure> {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    "unknown_key",
                    format!(
                        "no evaluation keys with key id {key_id:016x} for model `{model}`: upload them (POST …/keys)"
                    ),
                ))
            }
            Err(e) => return Err(Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string())),
        };
        let keys = rio::evaluation_keys_from_bytes(&bytes).map_err(Error::from)?;
        Ok(Server::with_limits(program, keys, limits, &Progress::silent())?)
    })
    .await
    .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let server = Arc::new(server);
    let mut cache = state.cache.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = server.key_bytes();
    cache.insert(k, server.clone(), bytes);
    state.metrics.cache_bytes.set(cache.used as i64);
    Ok(server)
}

/// Counts an admitted run (waiting or running) until it ends.
struct Admitted<'a>(&'a AppState);
impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn run(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    b: Body,
) -> Response {
    let started = Instant::now();
    let answer = run_inner(&state, &name, &headers, b).await;
    finish(&state, "run", started, answer)
}

async fn run_inner(state: &Arc<AppState>, name: &str, headers: &HeaderMap, b: Body) -> Answer {
    let m = model(state, name)?;
    let key_id = headers
        .get("x-fhec-key-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "key_id",
                "give the key id of the evaluation keys in the X-Fhec-Key-Id header (16 hex digits)",
            )
        })?;
    let bytes = body(state, b).await?;
    let lookups = m.program.pbs_count() as u64;
    // back-pressure: at most `jobs` runs run and `queue` more wait; the rest are turned away
    if state.admitted.fetch_add(1, Ordering::SeqCst) >= state.cfg.queue + state.cfg.jobs.max(1) {
        state.admitted.fetch_sub(1, Ordering::SeqCst);
        let mut f = Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{} runs are running or waiting already: retry later",
                state.cfg.queue + state.cfg.jobs.max(1)
            ),
        );
        f.retry_after = Some(1);
        return Err(f);
    }
    // admitted: counted until the run ends (`Admitted` gives the slot back on every path)
    let _admitted = Admitted(state);
    state.metrics.queue_depth.inc();
    let permit = state
        .jobs
        .acquire()
        .await
        .map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, "closing", e.to_string()))?;
    state.metrics.queue_depth.dec();
    let server = server_for(state, name, key_id).await?;
    state.metrics.running.inc();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let job = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, usize), Error> {
        let inputs = rio::ciphertexts_from_bytes(&bytes)?;
        if inputs.key_id() != key_id {
            return Err(Error::new(
                ErrorKind::Mismatch,
                format!(
                    "these ciphertexts are under key id {:016x}, the X-Fhec-Key-Id header says {key_id:016x}",
                    inputs.key_id()
                ),
            ));
        }
        let samples = inputs.samples();
        let out = server.run(inputs, &Progress::silent(), Some(&flag))?;
        Ok((rio::ciphertexts_to_bytes(&out)?, samples))
    });
    let result = tokio::time::timeout(state.cfg.timeout, job).await;
    if result.is_err() {
        // stops the run at its next lookup
        cancel.store(true, Ordering::Relaxed);
    }
    state.metrics.running.dec();
    drop(permit);
    let (out, samples) = match result {
        Ok(joined) => {
            joined.map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??
        }
        Err(_) => {
            return Err(Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("the run took over {} s and was cancelled", state.cfg.timeout.as_secs()),
            ));
        }
    };
    state.metrics.samples.inc_by(samples as u64);
    state.metrics.lookups.inc_by(lookups * samples as u64);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::KeyCache;
    use std::sync::Arc;

    #[test]
    fn the_key_cache_keeps_the_most_recently_used_within_its_budget() {
        let k = |i: u64| ("m".to_string(), i);
        let mut c = KeyCache::<u64>::new(100);
        c.insert(k(1), Arc::new(1), 40);
        c.insert(k(2), Arc::new(2), 40);
        assert!(c.get(&k(1)).is_some()); // 1 is now more recent than 2
        c.insert(k(3), Arc::new(3), 40); // 120 > 100: the least recent (2) goes
        assert!(c.get(&k(2)).is_none());
        assert_eq!((c.get(&k(1)).as_deref(), c.get(&k(3)).as_deref()), (Some(&1), Some(&3)));
        assert_eq!(c.used, 80);
        // an entry above the whole budget evicts all others but stays
        c.insert(k(4), Arc::new(4), 500);
        assert_eq!((c.entries.len(), c.used), (1, 500));
        // the same key again replaces its bytes
        c.insert(k(4), Arc::new(4), 50);
        assert_eq!((c.entries.len(), c.used), (1, 50));
    }
}

//! Bench-only probe (issue 15): what would a native gRPC receiver cost per Export call?
//!
//! A tonic server on its own Rust thread (a current-thread tokio runtime) serves OTLP
//! TraceService/Export with a raw-bytes codec and hands each request's bytes to Python's
//! asyncio loop; the gRPC answer is sent only after Python acked the call (took the batch).
//!
//! Two handoffs, chosen by `mode`:
//! - "queue": the Rust thread never takes the GIL. It pushes (bytes, ack) on a mutex'd queue
//!   and writes one byte to a socketpair when the queue was idle; Python's loop watches the
//!   other end (`loop.add_reader(server.fileno(), ...)`) and drains it with `take()`.
//! - "call": the Rust thread takes the GIL per call and runs
//!   `loop.call_soon_threadsafe(callback, bytes, ack)` (what PyO3 + asyncio give by default).
//!
//! Not the shipped crate: see bench/grpc_server_bench.py's docstring for how it is built.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use bytes::{Buf, BufMut, Bytes};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::oneshot;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const MAX_MESSAGE: usize = 4 << 20; // the receiver's grpc.max_receive_message_length

/// The message is the raw protobuf bytes both ways: the sidecar's codec parses them itself.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

/// Python's answer to one call: status code (0 = OK) and message.
type Answer = (i32, String);

/// One call's ack, handed to Python with the request bytes.
#[pyclass(frozen)]
struct Ack {
    tx: Mutex<Option<oneshot::Sender<Answer>>>,
}

#[pymethods]
impl Ack {
    /// Answer the call: 0 sends the empty ExportTraceServiceResponse, else that gRPC status.
    #[pyo3(signature = (code=0, message=String::new()))]
    fn send(&self, code: i32, message: String) -> bool {
        match self.tx.lock().unwrap().take() {
            Some(tx) => tx.send((code, message)).is_ok(),
            None => false,
        }
    }
}

/// Where requests wait for Python in "queue" mode.
struct Inbox {
    items: Mutex<Vec<(Bytes, oneshot::Sender<Answer>)>>,
    signalled: AtomicBool,
    waker: UnixStream,
}

enum Handoff {
    Queue(Arc<Inbox>),
    Call {
        loop_: Py<PyAny>,
        callback: Py<PyAny>,
    },
}

struct Shared {
    handoff: Handoff,
    calls: AtomicU64,
}

impl Shared {
    async fn export(&self, body: Bytes) -> Result<Bytes, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match &self.handoff {
            Handoff::Queue(inbox) => {
                inbox.items.lock().unwrap().push((body, tx));
                if !inbox.signalled.swap(true, Ordering::SeqCst) {
                    let _ = (&inbox.waker).write(&[1]);
                }
            }
            Handoff::Call { loop_, callback } => {
                let handed = Python::attach(|py| -> PyResult<()> {
                    let data = PyBytes::new(py, &body);
                    let ack = Py::new(
                        py,
                        Ack {
                            tx: Mutex::new(Some(tx)),
                        },
                    )?;
                    loop_.call_method1(py, "call_soon_threadsafe", (callback, data, ack))?;
                    Ok(())
                });
                if handed.is_err() {
                    return Err(Status::unavailable("the loop refused the call"));
                }
            }
        }
        match rx.await {
            Ok((0, _)) => Ok(Bytes::new()),
            Ok((code, message)) => Err(Status::new(Code::from_i32(code), message)),
            Err(_) => Err(Status::internal("the batch was dropped unanswered")),
        }
    }
}

#[derive(Clone)]
struct ExportService(Arc<Shared>);

impl UnaryService<Bytes> for ExportService {
    type Response = Bytes;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>,
    >;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            shared
                .export(request.into_inner())
                .await
                .map(tonic::Response::new)
        })
    }
}

/// The TraceService as a tower service, as tonic's generated server code writes it.
#[derive(Clone)]
struct TraceService(Arc<Shared>);

impl NamedService for TraceService {
    const NAME: &'static str = SERVICE;
}

impl<B> tower_service::Service<http::Request<B>> for TraceService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let svc = ExportService(self.0.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(MAX_MESSAGE), Some(MAX_MESSAGE));
            Ok(grpc.unary(svc, req).await)
        })
    }
}

/// The server: bound at construction, serving on its own thread until `stop()`.
#[pyclass(frozen)]
struct Server {
    shared: Arc<Shared>,
    reader: Option<UnixStream>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    port: u16,
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (addr, mode="queue", loop_=None, callback=None, window=None))]
    fn new(
        addr: &str,
        mode: &str,
        loop_: Option<Py<PyAny>>,
        callback: Option<Py<PyAny>>,
        window: Option<u32>,
    ) -> PyResult<Self> {
        let (handoff, reader) = match mode {
            "queue" => {
                let (reader, waker) = UnixStream::pair().map_err(err)?;
                reader.set_nonblocking(true).map_err(err)?;
                waker.set_nonblocking(true).map_err(err)?;
                let inbox = Inbox {
                    items: Mutex::new(Vec::new()),
                    signalled: AtomicBool::new(false),
                    waker,
                };
                (Handoff::Queue(Arc::new(inbox)), Some(reader))
            }
            "call" => match (loop_, callback) {
                (Some(loop_), Some(callback)) => (Handoff::Call { loop_, callback }, None),
                _ => {
                    return Err(PyRuntimeError::new_err(
                        "mode 'call' needs loop_ and callback",
                    ))
                }
            },
            _ => return Err(PyRuntimeError::new_err("mode is 'queue' or 'call'")),
        };
        let shared = Arc::new(Shared {
            handoff,
            calls: AtomicU64::new(0),
        });
        let std_listener = std::net::TcpListener::bind(addr).map_err(err)?;
        std_listener.set_nonblocking(true).map_err(err)?;
        let port = std_listener.local_addr().map_err(err)?.port();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let service = TraceService(shared.clone());
        let thread = std::thread::Builder::new()
            .name("grpc-probe".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(std_listener).expect("listener");
                    // TCP_NODELAY as grpc sets it: without, Nagle + delayed ACKs hold answers ~10 ms.
                    let incoming = tonic::transport::server::TcpIncoming::from(listener)
                        .with_nodelay(Some(true));
                    // `window`: HTTP/2 flow-control windows and frame size (None: h2's defaults).
                    let _ = tonic::transport::Server::builder()
                        .initial_stream_window_size(window)
                        .initial_connection_window_size(window)
                        .max_frame_size(window.map(|w| w.min((1 << 24) - 1)))
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stop_rx.await;
                        })
                        .await;
                });
            })
            .map_err(err)?;
        Ok(Server {
            shared,
            reader,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
            port,
        })
    }

    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    #[getter]
    fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    /// The socket to watch for readability in "queue" mode.
    fn fileno(&self) -> PyResult<i32> {
        self.reader
            .as_ref()
            .map(|r| r.as_raw_fd())
            .ok_or_else(|| PyRuntimeError::new_err("not in queue mode"))
    }

    /// Every waiting request as (bytes, Ack), oldest first; clears the wake-up.
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Vec<(Bound<'py, PyBytes>, Py<Ack>)>> {
        let (Handoff::Queue(inbox), Some(reader)) = (&self.shared.handoff, &self.reader) else {
            return Err(PyRuntimeError::new_err("not in queue mode"));
        };
        let mut sink = [0u8; 256];
        while let Ok(n) = (&*reader).read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        inbox.signalled.store(false, Ordering::SeqCst);
        let items = std::mem::take(&mut *inbox.items.lock().unwrap());
        items
            .into_iter()
            .map(|(body, tx)| {
                Ok((
                    PyBytes::new(py, &body),
                    Py::new(
                        py,
                        Ack {
                            tx: Mutex::new(Some(tx)),
                        },
                    )?,
                ))
            })
            .collect()
    }

    /// Stop serving and join the thread (waits for in-flight calls; Python must keep acking).
    fn stop(&self, py: Python<'_>) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let thread = self.thread.lock().unwrap().take();
        if let Some(thread) = thread {
            py.detach(|| {
                let _ = thread.join();
            });
        }
    }
}

fn err(e: std::io::Error) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

#[pymodule]
fn costctx_grpc_probe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Server>()?;
    m.add_class::<Ack>()?;
    Ok(())
}

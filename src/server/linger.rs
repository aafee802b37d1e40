//! Lingering close, as nginx does it: when a connection ends, its write side is shut (the
//! answer is complete) and whatever the client still sends is read and thrown away for a
//! bounded time before the socket is closed. Without it, a request refused before its body was
//! read (401, 403, 413) is answered and the socket closed while the client is still sending;
//! the kernel then resets the connection and clients that read only after sending (aiohttp's
//! multipart upload, for one) see the reset instead of the answer.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The longest a closed connection lingers (nginx's `lingering_time`).
const LINGER_TOTAL: Duration = Duration::from_secs(30);
/// The longest it waits for more bytes from the client (nginx's `lingering_timeout`).
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// A client socket that lingers when dropped (in a task of the current runtime).
pub struct Lingering(Option<TcpStream>);

impl Lingering {
    pub fn new(stream: TcpStream) -> Lingering {
        Lingering(Some(stream))
    }

    fn inner(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        match self.get_mut().0.as_mut() {
            Some(s) => Ok(Pin::new(s)),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.0.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(linger(stream));
        }
    }
}

/// Shuts the write side, then discards what arrives until the client closes, goes quiet for
/// [`LINGER_IDLE`], or [`LINGER_TOTAL`] has passed.
async fn linger(mut stream: TcpStream) {
    // Already shut by the HTTP layer, perhaps: then this fails, and draining is what is left.
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let drain = async {
        loop {
            match tokio::time::timeout(LINGER_IDLE, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TOTAL, drain).await;
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

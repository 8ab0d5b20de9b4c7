//! The production home: `tokio::net` sockets and `std::fs` files.

use std::io;
use std::path::Path;

use super::Net;

pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(addr: &str) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn connect(addr: &str) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn peer_ip(stream: &Self::Stream) -> Option<std::net::IpAddr> {
        stream.peer_addr().ok().map(|a| a.ip())
    }
}

/// fsyncs a directory so that entries created or removed in it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

crate::fs_disk!(
    /// A broker's data directory on the real file system.
    StdDisk,
    std::fs,
    sync_dir
);

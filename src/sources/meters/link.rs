//! One request–reply transaction with a meter over a byte stream (a local RS-485 port or a
//! transparent TCP serial server): write the request, then read until the protocol's decoder
//! finds a whole frame, refuses the bytes, or the timeout passes. Replies that arrive in pieces
//! (slow 2400-baud lines behind a serial server) and noise before the start byte are normal.
//! Whatever is already waiting on the line when a request goes out (a late reply to an earlier,
//! timed-out request) is discarded first, so it is never taken for this request's reply.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::FrameError;

/// Largest reply read before giving up (the longest of the three protocols is 6 + 255 bytes,
/// plus preambles and noise).
const MAX_REPLY: usize = 1024;

/// Why a transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    #[error("no complete reply within {0:?}")]
    Timeout(Duration),
    #[error("the link failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the link closed")]
    Closed,
    #[error("bad reply: {0}")]
    Frame(FrameError),
}

/// A protocol's frame decoder: a frame and the bytes it used, or why the bytes are not one.
pub type Decoder<T> = fn(&[u8]) -> Result<(T, usize), FrameError>;

/// Sends `request` and decodes the reply with `decode` (one of the protocols' `decode`).
pub async fn transact<S, T>(
    stream: &mut S,
    request: &[u8],
    decode: Decoder<T>,
    timeout: Duration,
) -> Result<T, TransactionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stale = drain(stream).await?;
    if stale > 0 {
        tracing::debug!(bytes = stale, "Discarded bytes left on the meter line");
    }
    stream.write_all(request).await?;
    stream.flush().await?;
    let exchange = async {
        let mut reply = Vec::with_capacity(64);
        let mut chunk = [0u8; 256];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(TransactionError::Closed);
            }
            reply.extend_from_slice(&chunk[..n]);
            match decode(&reply) {
                Ok((frame, _)) => return Ok(frame),
                Err(FrameError::Incomplete(_) | FrameError::NoStart) if reply.len() < MAX_REPLY => {
                }
                Err(e) => return Err(TransactionError::Frame(e)),
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TransactionError::Timeout(timeout))?
}

/// Reads and discards what is already waiting on the line; how many bytes that was.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) -> Result<usize, TransactionError> {
    let mut chunk = [0u8; 256];
    let mut discarded = 0;
    loop {
        // A zero timeout still polls the read once: waiting bytes are taken, none are awaited.
        match tokio::time::timeout(Duration::ZERO, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err(TransactionError::Closed),
            Ok(Ok(n)) => discarded += n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Ok(discarded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::meters::dlt645;

    const METER: [u8; 6] = [0x78, 0x56, 0x34, 0x12, 0x00, 0x00];

    /// A meter on the other end of `stream` that answers after reading a whole request with
    /// `reply`, written in pieces of `piece` bytes with a pause between them.
    fn meter(
        mut stream: tokio::io::DuplexStream,
        reply: Vec<u8>,
        piece: usize,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 64];
            while dlt645::decode(&request).is_err() {
                let Ok(n) = stream.read(&mut buffer).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            for part in reply.chunks(piece) {
                if stream.write_all(part).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Keep the line open, as a serial server does.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
    }

    const UA: u32 = 0x0201_0100;
    const IA: u32 = 0x0202_0100;

    /// The meter's normal reply to a read of `di` with the value bytes `value` (little-endian
    /// BCD, as on the wire before the +0x33 offset).
    fn reply(di: u32, value: &[u8]) -> Vec<u8> {
        let mut data = di.to_le_bytes().to_vec();
        data.extend_from_slice(value);
        dlt645::encode(&dlt645::Frame {
            address: METER,
            control: 0x91,
            data,
        })
    }

    /// 229.8 V.
    fn ua_reply() -> Vec<u8> {
        reply(UA, &[0x98, 0x22])
    }

    /// Reads `di` from the meter over `gateway`, waiting up to `within`; the value.
    async fn read(
        gateway: &mut tokio::io::DuplexStream,
        di: u32,
        within: Duration,
    ) -> Result<f64, TransactionError> {
        let request = dlt645::read_request(METER, di);
        let frame = transact(gateway, &request, dlt645::decode, within).await?;
        let format = dlt645::data_id(di).expect("a known identifier");
        dlt645::reply_value(&frame, format).map_err(TransactionError::Frame)
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_in_pieces_after_line_noise_is_one_frame() {
        let (mut gateway, line) = tokio::io::duplex(256);
        let mut noisy = vec![0x00, 0xFF, 0x13];
        noisy.extend(ua_reply());
        let _meter = meter(line, noisy, 3);
        let ua = read(&mut gateway, UA, Duration::from_secs(2)).await;
        assert_eq!(ua.expect("a value"), 229.8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_reply_to_an_earlier_request_is_not_taken_for_the_next_one() {
        let (mut gateway, mut line) = tokio::io::duplex(256);
        // The reply to an earlier request for Ua arrives after its timeout …
        line.write_all(&ua_reply()).await.expect("written");
        // … and then the meter answers the new request for Ia (−1.234 A).
        let _meter = meter(line, reply(IA, &[0x34, 0x12, 0x80]), 64);
        let ia = read(&mut gateway, IA, Duration::from_secs(2)).await;
        assert_eq!(ia.expect("a value"), -1.234);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_meter_times_out_and_a_damaged_reply_is_refused() {
        let (mut gateway, _line) = tokio::io::duplex(256);
        let silent = read(&mut gateway, UA, Duration::from_millis(500)).await;
        assert!(
            matches!(silent, Err(TransactionError::Timeout(_))),
            "{silent:?}"
        );

        let (mut gateway, line) = tokio::io::duplex(256);
        let mut damaged = ua_reply();
        let at = damaged.len() - 2;
        damaged[at] ^= 0x01;
        let _meter = meter(line, damaged, 64);
        let refused = read(&mut gateway, UA, Duration::from_secs(2)).await;
        assert!(
            matches!(
                refused,
                Err(TransactionError::Frame(FrameError::Checksum { .. }))
            ),
            "{refused:?}"
        );
    }
}

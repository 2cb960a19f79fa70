//! The io_uring relay through real loopback sockets: messages both ways with their bytes
//! counted, half-closes forwarded in order, a reset ending the relay, a stop, and a slow target
//! pausing the receive without losing or reordering a byte. Each test says so and passes where
//! io_uring is unavailable (seccomp, old kernels): the epoll relay covers those machines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::{fds, pair};
use weir_uring::{End, How, Meter};

fn start(
    client: std::net::TcpStream,
    target: std::net::TcpStream,
    meter: &Arc<Meter>,
) -> Option<weir_uring::Relay> {
    let (c, t) = fds(client, target);
    match weir_uring::start(c, t, meter.clone()) {
        Ok(r) => Some(r),
        Err(_) => {
            eprintln!("io_uring is unavailable here; nothing to test");
            None
        }
    }
}

#[tokio::test]
async fn messages_both_ways_half_closes_in_order_and_counted() {
    let (mut client, lb_client) = pair();
    let (lb_target, mut backend) = pair();
    let meter = Arc::new(Meter::default());
    let Some(mut relay) = start(lb_client, lb_target, &meter) else { return };

    let mut b = [0u8; 16];
    for _ in 0..3 {
        client.write_all(b"ping").unwrap();
        backend.read_exact(&mut b[..4]).unwrap();
        assert_eq!(&b[..4], b"ping");
        backend.write_all(b"pong!").unwrap();
        client.read_exact(&mut b[..5]).unwrap();
        assert_eq!(&b[..5], b"pong!");
    }
    // The client's half-close reaches the backend after its last bytes; the backend answers.
    client.write_all(b"last").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    backend.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"last");
    backend.write_all(b"bye").unwrap();
    backend.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bye");

    let f = tokio::time::timeout(Duration::from_secs(5), relay.finished())
        .await
        .expect("the relay ends after both half-closes")
        .expect("the ring answers");
    assert_eq!(f.how, How::Ended { up: End::Eof, down: End::Eof });
    assert_eq!(meter.moved(), 3 * 9 + 4 + 3);
    assert_eq!(meter.from_client.load(std::sync::atomic::Ordering::Relaxed), 3 * 4 + 4);
}

#[tokio::test]
async fn a_reset_ends_the_relay_and_a_stop_ends_another() {
    let (client, lb_client) = pair();
    let (lb_target, _backend) = pair();
    let meter = Arc::new(Meter::default());
    let Some(mut relay) = start(lb_client, lb_target, &meter) else { return };
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    let f = tokio::time::timeout(Duration::from_secs(5), relay.finished())
        .await
        .expect("a reset ends the relay at once")
        .expect("the ring answers");
    assert!(
        matches!(f.how, How::Ended { up: End::ReadError, .. } | How::Ended { up: End::Eof, .. }),
        "{:?}",
        f.how
    );

    // Stopped: nothing moves, the load balancer ends it.
    let (_client, lb_client) = pair();
    let (lb_target, _backend) = pair();
    let Some(mut relay) = start(lb_client, lb_target, &meter) else { return };
    relay.stop();
    let f = tokio::time::timeout(Duration::from_secs(5), relay.finished())
        .await
        .expect("a stop ends the relay at once")
        .expect("the ring answers");
    assert_eq!(f.how, How::Stopped);
}

#[tokio::test]
async fn a_slow_target_pauses_the_receive_and_no_byte_is_lost() {
    const N: usize = 300;
    const LEN: usize = 1000;
    let (client, lb_client) = pair();
    let (backend, lb_target) = common::narrow_pair();
    let meter = Arc::new(Meter::default());
    let before = weir_uring::counters().paused;
    let Some(mut relay) = start(lb_client, lb_target, &meter) else { return };

    let transfer = common::paced_transfer(client, backend, N, LEN);
    let f = tokio::time::timeout(Duration::from_secs(20), relay.finished())
        .await
        .expect("the relay ends")
        .expect("the ring answers");
    match f.how {
        How::Ended { up: End::Eof, .. } | How::Continue { up: Some(End::Eof), .. } => {}
        // Bytes that piled up while paused may come in whole buffers: bulk, handed back.
        How::Continue { up: None, .. } => {
            tokio::task::spawn_blocking(move || common::finish_copy(f.client, f.target))
                .await
                .unwrap()
        }
        other => panic!("unexpected end {other:?}"),
    }
    common::join(transfer).await;
    assert!(weir_uring::counters().paused > before, "the receive was never paused");
}

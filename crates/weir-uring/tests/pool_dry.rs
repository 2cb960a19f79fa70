//! A ring whose buffer pool runs dry hands the connection back — it does not wait for buffers
//! that connections with slow peers hold — and the caller finishes the transfer with every byte
//! in order. The pool is set to four buffers (this test binary's own process).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use weir_uring::{End, How, Meter};

#[tokio::test]
async fn a_dry_pool_hands_the_connection_back_and_no_byte_is_lost() {
    // Read once, when the rings are set up (the first `start` below).
    std::env::set_var("WEIR_IO_URING_BUFFERS", "4");
    const N: usize = 200;
    const LEN: usize = 1000;
    let (client, lb_client) = common::pair();
    let (backend, lb_target) = common::narrow_pair();
    let (c, t) = common::fds(lb_client, lb_target);
    let before = weir_uring::counters().pool_dry;
    let Ok(mut relay) = weir_uring::start(c, t, Arc::new(Meter::default())) else {
        eprintln!("io_uring is unavailable here; nothing to test");
        return;
    };
    let transfer = common::paced_transfer(client, backend, N, LEN);
    let f = tokio::time::timeout(Duration::from_secs(20), relay.finished())
        .await
        .expect("the relay hands the connection back")
        .expect("the ring answers");
    assert!(matches!(f.how, How::Continue { up: None | Some(End::Eof), .. }), "{:?}", f.how);
    assert!(weir_uring::counters().pool_dry > before, "the pool never ran dry");
    if matches!(f.how, How::Continue { up: None, .. }) {
        tokio::task::spawn_blocking(move || common::finish_copy(f.client, f.target)).await.unwrap();
    }
    common::join(transfer).await;
}

//! `ReadWrite`: writes reach the primary, reads are spread over the replicas and fall back to
//! the primary within the budget when no replica can serve.

mod common;

use std::time::Duration;

use common::{assert_invariants, builder, pool, Behavior, Fake};
use pool_core::{Member, ReadWrite};

#[tokio::test(start_paused = true)]
async fn writes_go_to_the_primary_and_reads_round_robin_over_the_replicas() {
    let (primary, p_fake) = pool(2);
    let (r0, r0_fake) = pool(2);
    let (r1, r1_fake) = pool(2);
    let rw = ReadWrite::new(primary, vec![r0, r1]);

    drop(rw.get().await.unwrap());
    assert_eq!(p_fake.connects(), 1);

    let mut served = Vec::new();
    for _ in 0..4 {
        let (conn, member) = rw.get_read().await.unwrap();
        served.push(member);
        drop(conn);
    }
    assert_eq!(
        served,
        [
            Member::Replica(0),
            Member::Replica(1),
            Member::Replica(0),
            Member::Replica(1)
        ]
    );
    assert_eq!((r0_fake.connects(), r1_fake.connects()), (1, 1));
    assert_eq!(p_fake.connects(), 1, "no read reached the primary");
    assert_eq!((rw.replica_reads(), rw.fallbacks()), (4, 0));
    let members = rw.members();
    assert_eq!(members.len(), 3);
    assert_eq!(members[0].0, Member::Primary);
    for pool in std::iter::once(rw.primary()).chain(rw.replicas()) {
        assert_invariants(pool);
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_replica_is_skipped_and_a_read_falls_back_when_none_can_serve() {
    let (primary, p_fake) = pool(2);
    let dead = Fake::new();
    dead.set_connect(Behavior::FAIL);
    let r0 = builder(&dead, 2).build().unwrap();
    let (r1, r1_fake) = pool(2);
    let rw = ReadWrite::new(primary, vec![r0, r1]).replica_wait(Duration::from_millis(200));

    // Whichever replica a read starts with, the live one serves it.
    for _ in 0..4 {
        let (_conn, member) = rw.get_read().await.unwrap();
        assert_eq!(member, Member::Replica(1));
    }
    assert!(r1_fake.connects() >= 1);
    assert_eq!(rw.fallbacks(), 0);

    // Now the live one is full as well: the read falls back to the primary within the budget.
    let r1_held = rw.replicas()[1].get().await.unwrap();
    let r1_held2 = rw.replicas()[1].get().await.unwrap();
    let start = tokio::time::Instant::now();
    let (_conn, member) = rw.get_read().await.unwrap();
    assert_eq!(member, Member::Primary);
    assert!(
        start.elapsed() <= Duration::from_millis(200),
        "the replica budget bounds the detour: {:?}",
        start.elapsed()
    );
    assert_eq!(rw.fallbacks(), 1);
    assert_eq!(p_fake.connects(), 1);
    drop((r1_held, r1_held2));
}

#[tokio::test(start_paused = true)]
async fn without_replicas_every_read_reaches_the_primary() {
    let (primary, p_fake) = pool(1);
    let rw = ReadWrite::new(primary, Vec::new());
    let (conn, member) = rw.get_read().await.unwrap();
    assert_eq!(member, Member::Primary);
    drop(conn);
    assert_eq!(p_fake.connects(), 1);
    assert_eq!(rw.fallbacks(), 0, "no replica to fall back from");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_read_loses_no_connection_of_any_member() {
    let (primary, _p) = pool(1);
    let (r0, _r0) = pool(1);
    let rw = ReadWrite::new(primary, vec![r0]).replica_wait(Duration::from_secs(1));
    let held = rw.replicas()[0].get().await.unwrap();
    // The read queues on the full replica; cancel it there.
    let read = rw.get_read();
    assert!(tokio::time::timeout(Duration::from_millis(10), read)
        .await
        .is_err());
    drop(held);
    let (_conn, member) = rw.get_read().await.unwrap();
    assert_eq!(member, Member::Replica(0));
    for pool in std::iter::once(rw.primary()).chain(rw.replicas()) {
        assert_invariants(pool);
    }
}

//! Behaviour of the ring with honest producers and consumer: order, wrap
//! around, sizes, many threads, back-pressure, and a consumer that leaves.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use winstrace_ring::{Ring, RingRef, WriteError, HEADER_WORDS, MAX_PAYLOAD};

/// Payload for record `seq` of producer `producer`: both numbers, then a
/// filler whose length and bytes derive from them, so the consumer can
/// check every byte.
fn payload(producer: u32, seq: u32, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&producer.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    let filler = (seq.wrapping_mul(7) ^ producer.wrapping_mul(13)) % 120;
    buf.extend((0..filler).map(|i| (producer ^ seq ^ i) as u8));
}

fn check_payload(p: &[u8]) -> (u32, u32) {
    assert!(p.len() >= 8, "short payload {p:?}");
    let producer = u32::from_le_bytes(p[0..4].try_into().unwrap());
    let seq = u32::from_le_bytes(p[4..8].try_into().unwrap());
    let mut want = Vec::new();
    payload(producer, seq, &mut want);
    assert_eq!(p, &want[..], "payload of producer {producer} seq {seq} damaged");
    (producer, seq)
}

/// Reads until `count` records arrived, checking that each producer's
/// sequence numbers come in order without gaps. Panics after `limit`.
fn consume(ring: RingRef<'_>, producers: usize, count: usize, limit: Duration, slow: bool) -> usize {
    let mut reader = ring.reader().unwrap();
    let mut next_seq = vec![0u32; producers];
    let mut received = 0;
    let deadline = Instant::now() + limit;
    while received < count {
        match reader.next().unwrap() {
            Some(rec) => {
                assert_eq!(rec.kind, 7);
                let (p, seq) = check_payload(rec.payload);
                assert_eq!(seq, next_seq[p as usize], "producer {p} out of order");
                next_seq[p as usize] += 1;
                received += 1;
                if slow && received % 50 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            None => {
                assert!(Instant::now() < deadline, "only {received} of {count} records after {limit:?}");
                thread::yield_now();
            }
        }
    }
    // Nothing more than announced.
    assert_eq!(reader.next().unwrap(), None);
    received
}

#[test]
fn single_producer_keeps_order() {
    let region = Ring::alloc_region(4096).unwrap();
    let ring = Ring::init(&region, 4096).unwrap();
    let mut reader = ring.reader().unwrap();
    assert_eq!(reader.next().unwrap(), None);
    let mut buf = Vec::new();
    let mut seq = 0;
    for round in 0..50u32 {
        // Write a batch, read it back, in order.
        for _ in 0..=round % 17 {
            payload(0, seq, &mut buf);
            ring.write(7, &buf, &mut || panic!("must not wait")).unwrap();
            seq += 1;
        }
        let mut expected = seq - (round % 17 + 1);
        while let Some(rec) = reader.next().unwrap() {
            assert_eq!(check_payload(rec.payload), (0, expected));
            expected += 1;
        }
        assert_eq!(expected, seq);
    }
    assert_eq!(ring.lost_records(), 0);
    assert_eq!(ring.read_position(), ring.write_position());
}

#[test]
fn wraps_around_many_times() {
    // Record sizes (8..=128 bytes) do not divide 256, so records straddle
    // the end of the data area in every possible way.
    let cap = 256;
    let region = Ring::alloc_region(cap).unwrap();
    let ring = Ring::init(&region, cap).unwrap();
    let mut reader = ring.reader().unwrap();
    let mut buf = Vec::new();
    for i in 0..20_000u32 {
        let len = (i * 31 % 121) as usize;
        buf.clear();
        buf.extend((0..len).map(|j| (i as usize * 3 + j) as u8));
        ring.write(i, &buf, &mut || panic!("must not wait")).unwrap();
        let rec = reader.next().unwrap().unwrap();
        assert_eq!(rec.kind, i);
        assert_eq!(rec.payload, &buf[..]);
        assert_eq!(reader.next().unwrap(), None);
    }
    assert!(ring.write_position() > cap * 1000, "wrapped only {} times", ring.write_position() / cap);
    assert_eq!(ring.read_position(), ring.write_position());
    // Everything consumed was zeroed.
    assert!(region[HEADER_WORDS..].iter().all(|w| w.load(Ordering::Relaxed) == 0));
}

#[test]
fn variable_sizes_up_to_the_whole_ring() {
    let cap = 1024u64;
    let region = Ring::alloc_region(cap).unwrap();
    let ring = Ring::init(&region, cap).unwrap();
    assert_eq!(ring.max_payload(), 1016);
    let mut reader = ring.reader().unwrap();
    // Offset the cursors so that large records wrap.
    ring.write(1, &[9; 300], &mut || {}).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().payload, &[9; 300][..]);
    for len in (0..=16).chain([63, 64, 65, 500, 1000, 1009, 1015, 1016]) {
        let data: Vec<u8> = (0..len).map(|j| (j * 7 + len) as u8).collect();
        ring.write(len as u32, &data, &mut || panic!("must not wait")).unwrap();
        let rec = reader.next().unwrap().unwrap();
        assert_eq!((rec.kind, rec.payload), (len as u32, &data[..]));
    }
    // One byte too many can never fit: refused and counted, not waited for.
    assert_eq!(
        ring.write(0, &[0; 1017], &mut || panic!("must not wait")),
        Err(WriteError::TooLarge { len: 1017, max: 1016 })
    );
    assert_eq!(ring.lost_records(), 1);
    assert_eq!(MAX_PAYLOAD, (1 << 31) - 1);
}

#[test]
fn unpublished_reservation_blocks_the_reader_until_committed() {
    // Emulates a producer between reserving and publishing: the reader
    // must wait for it, not skip it or read its zeroed slot as a record.
    let region = Ring::alloc_region(64).unwrap();
    let ring = Ring::init(&region, 64).unwrap();
    let mut reader = ring.reader().unwrap();
    region[8].store(16, Ordering::Relaxed); // write cursor: 16 bytes reserved
    assert_eq!(reader.next().unwrap(), None);
    region[HEADER_WORDS + 1].store(u64::from_le_bytes(*b"abcdefgh"), Ordering::Relaxed);
    region[HEADER_WORDS].store(1 << 63 | 8 << 32 | 5, Ordering::Release);
    let rec = reader.next().unwrap().unwrap();
    assert_eq!((rec.kind, rec.payload), (5, &b"abcdefgh"[..]));
}

#[test]
fn eight_producers_stress() {
    const PRODUCERS: usize = 8;
    const PER_PRODUCER: u32 = 10_000;
    let cap = 64 * 1024;
    let region = Ring::alloc_region(cap).unwrap();
    let ring = Ring::init(&region, cap).unwrap();
    let waits = AtomicUsize::new(0);
    let received = thread::scope(|s| {
        for p in 0..PRODUCERS as u32 {
            let waits = &waits;
            s.spawn(move || {
                let mut buf = Vec::new();
                for seq in 0..PER_PRODUCER {
                    payload(p, seq, &mut buf);
                    ring.write(7, &buf, &mut || {
                        waits.fetch_add(1, Ordering::Relaxed);
                        thread::yield_now();
                    })
                    .unwrap();
                }
            });
        }
        s.spawn(|| {
            consume(ring, PRODUCERS, PRODUCERS * PER_PRODUCER as usize, Duration::from_secs(300), false)
        })
        .join()
        .unwrap()
    });
    assert_eq!(received, 80_000);
    assert_eq!(ring.lost_records(), 0);
    assert_eq!(ring.read_position(), ring.write_position());
    eprintln!(
        "stress: {received} records, {} bytes through a {cap}-byte ring, {} waits",
        ring.write_position(),
        waits.load(Ordering::Relaxed)
    );
}

#[test]
fn back_pressure_drops_nothing() {
    // A ring that holds two or three records and a consumer that naps:
    // producers spend most of their time waiting, and nothing is lost.
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: u32 = 2_000;
    let cap = 256;
    let region = Ring::alloc_region(cap).unwrap();
    let ring = Ring::init(&region, cap).unwrap();
    let waits = AtomicUsize::new(0);
    let received = thread::scope(|s| {
        for p in 0..PRODUCERS as u32 {
            let waits = &waits;
            s.spawn(move || {
                let mut buf = Vec::new();
                for seq in 0..PER_PRODUCER {
                    payload(p, seq, &mut buf);
                    ring.write(7, &buf, &mut || {
                        waits.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_micros(50));
                    })
                    .unwrap();
                }
            });
        }
        s.spawn(|| {
            consume(ring, PRODUCERS, PRODUCERS * PER_PRODUCER as usize, Duration::from_secs(300), true)
        })
        .join()
        .unwrap()
    });
    assert_eq!(received, PRODUCERS * PER_PRODUCER as usize);
    assert_eq!(ring.lost_records(), 0);
    assert!(waits.load(Ordering::Relaxed) > 0, "producers never had to wait");
}

/// Fills a 64-byte ring with four 16-byte records.
fn full_ring(region: &[AtomicU64]) -> RingRef<'_> {
    let ring = Ring::init(region, 64).unwrap();
    for i in 0..4u64 {
        ring.write(1, &i.to_le_bytes(), &mut || panic!("must not wait")).unwrap();
    }
    ring
}

#[test]
fn consumer_gone_counts_lost_records() {
    let region = Ring::alloc_region(64).unwrap();
    let ring = full_ring(&region);
    assert!(ring.consumer_alive());
    ring.set_consumer_alive(false);
    assert!(!ring.consumer_alive());
    for n in 1..=3 {
        assert_eq!(ring.write(1, b"x", &mut || panic!("must not wait")), Err(WriteError::ConsumerGone));
        assert_eq!(ring.lost_records(), n);
    }
    // What was written before is still there for a consumer that returns.
    ring.set_consumer_alive(true);
    let mut reader = ring.reader().unwrap();
    for i in 0..4u64 {
        assert_eq!(reader.next().unwrap().unwrap().payload, &i.to_le_bytes()[..]);
    }
    assert_eq!(reader.next().unwrap(), None);
    assert_eq!(reader.lost_records(), 3);
    // With room, a producer writes even if the consumer is gone: the
    // record is not lost, it waits in the ring.
    ring.set_consumer_alive(false);
    ring.write(2, b"later", &mut || panic!("must not wait")).unwrap();
    assert_eq!(ring.lost_records(), 3);
}

#[test]
fn blocked_producer_gives_up_when_consumer_leaves() {
    let region = Ring::alloc_region(64).unwrap();
    let ring = full_ring(&region);
    let waiting = AtomicBool::new(false);
    let result = thread::scope(|s| {
        let h = s.spawn(|| ring.write(1, b"blocked", &mut || waiting.store(true, Ordering::Relaxed)));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !waiting.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "producer never waited");
            thread::yield_now();
        }
        // Still blocked: nothing was lost yet.
        assert_eq!(ring.lost_records(), 0);
        ring.set_consumer_alive(false);
        h.join().unwrap()
    });
    assert_eq!(result, Err(WriteError::ConsumerGone));
    assert_eq!(ring.lost_records(), 1);
}

#[test]
fn blocked_producer_resumes_when_consumer_reads() {
    let region = Ring::alloc_region(64).unwrap();
    let ring = full_ring(&region);
    let waiting = AtomicBool::new(false);
    thread::scope(|s| {
        let h = s.spawn(|| ring.write(9, b"blocked", &mut || waiting.store(true, Ordering::Relaxed)));
        while !waiting.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        let mut reader = ring.reader().unwrap();
        assert!(reader.next().unwrap().is_some());
        h.join().unwrap().unwrap();
        for _ in 0..3 {
            assert_eq!(reader.next().unwrap().unwrap().kind, 1);
        }
        let rec = reader.next().unwrap().unwrap();
        assert_eq!((rec.kind, rec.payload), (9, &b"blocked"[..]));
    });
    assert_eq!(ring.lost_records(), 0);
}

#[test]
fn attach_sees_the_same_ring() {
    let region = Ring::alloc_region(128).unwrap();
    let producer = Ring::init(&region, 128).unwrap();
    producer.write(3, b"hello", &mut || {}).unwrap();
    // A second attach (the other process) agrees on everything.
    let consumer = Ring::attach(&region).unwrap();
    assert_eq!(consumer.capacity(), 128);
    let mut reader = consumer.reader().unwrap();
    let rec = reader.next().unwrap().unwrap();
    assert_eq!((rec.position, rec.kind, rec.payload), (0, 3, &b"hello"[..]));
    // A new reader resumes at the shared read cursor.
    producer.write(4, b"world", &mut || {}).unwrap();
    drop(reader);
    let mut again = consumer.reader().unwrap();
    let rec = again.next().unwrap().unwrap();
    assert_eq!((rec.position, rec.kind, rec.payload), (16, 4, &b"world"[..]));
    // Re-initialising empties it.
    Ring::init(&region, 64).unwrap();
    assert_eq!(Ring::attach(&region).unwrap().reader().unwrap().next(), Ok(None));
}

//! The engine against an in-memory database (`Fake`): which rows a claim hands
//! out, parks and unlocks; what happens to the rows of a lost session; where
//! a failed settlement is reported. The real databases are exercised by
//! `tests/postgres.rs`, `tests/mysql.rs` and `tests/restart.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{Secret, SqlConnection};
use crate::source::sql::RENEW_EVERY;
use crate::source::sql::template::{Dialect, Template};

/// Another replica's session.
const OTHER: u64 = 999;

#[derive(Debug, Default)]
struct Server {
    /// Ids of the rows the query matches.
    pending: BTreeSet<i64>,
    /// Rows whose identity is NULL: claimed, never found by the re-read.
    null_identity: BTreeSet<i64>,
    /// Rows another replica marked done between the claim and the re-read.
    gone_on_reread: BTreeSet<i64>,
    /// Lock -> the session holding it.
    locks: HashMap<LockKey, u64>,
    fences: HashMap<u64, CancellationToken>,
    sessions: u64,
    /// PostgreSQL's claim skips the keys it is given; MySQL's does not.
    skip_held: bool,
    fail_writes: bool,
    relock_calls: usize,
    /// Rows marked done through a session that did not hold their lock.
    unlocked_writes: usize,
    /// Rows another replica has a live lease of (its session died).
    foreign_leases: BTreeSet<i64>,
    /// This replica's leases.
    leases: BTreeSet<i64>,
    /// The keeper's renewals fail.
    fail_renewals: bool,
    /// The next lease statement fails (a deadlock) without ending the session.
    fail_lease: bool,
    /// Keys of the keeper's last good renewal.
    renewed: Vec<LockKey>,
}

type Shared = Arc<Mutex<Server>>;

fn key(id: i64) -> LockKey {
    LockKey::from_i64(id)
}

fn lost() -> Error {
    Error::Source {
        kind: "fake",
        message: "session lost".into(),
    }
}

/// The server forgets session `id`: its locks go, its fence is cancelled.
fn kill(server: &Shared, id: u64) {
    let mut s = server.lock().unwrap();
    s.locks.retain(|_, holder| *holder != id);
    if let Some(fence) = s.fences.get(&id) {
        fence.cancel();
    }
}

#[derive(Debug, Clone)]
struct Fake(Shared);

#[derive(Debug)]
struct FakeKeeper(Shared);

impl KeeperSession for FakeKeeper {
    async fn renew(&mut self, keys: &[LockKey]) -> Result<()> {
        let mut s = self.0.lock().unwrap();
        if s.fail_renewals {
            return Err(lost());
        }
        s.renewed = keys.to_vec();
        Ok(())
    }

    async fn sweep(&mut self) -> Result<u64> {
        Ok(0)
    }

    fn compact(&mut self) {}
}

#[derive(Debug)]
struct FakeSession {
    id: u64,
    server: Shared,
}

#[derive(Debug)]
struct FakeWriter(Shared);

impl FakeSession {
    fn live(&self) -> Result<std::sync::MutexGuard<'_, Server>> {
        let s = self.server.lock().unwrap();
        match s.fences.get(&self.id) {
            Some(fence) if !fence.is_cancelled() => Ok(s),
            _ => Err(lost()),
        }
    }

    fn event(id: i64, stamp: &Stamp) -> SqlEvent<()> {
        Claimed {
            id: id.to_string(),
            body: Bytes::new(),
            handle: SqlHandle {
                key: key(id),
                values: (),
                stamp: stamp.clone(),
            },
        }
    }
}

impl Driver for Fake {
    const KIND: &'static str = "fake";
    type Values = ();
    type Session = FakeSession;
    type Writer = FakeWriter;
    type Keeper = FakeKeeper;

    async fn open_keeper(&self) -> Result<FakeKeeper> {
        Ok(FakeKeeper(self.0.clone()))
    }

    async fn open_session(&self) -> Result<Opened<FakeSession>> {
        let mut s = self.0.lock().unwrap();
        s.sessions += 1;
        let fence = CancellationToken::new();
        let id = s.sessions;
        s.fences.insert(id, fence.clone());
        Ok(Opened {
            session: FakeSession {
                id,
                server: self.0.clone(),
            },
            fence,
            uptime: Duration::from_secs(3600),
        })
    }

    async fn open_writer(&self) -> Result<FakeWriter> {
        Ok(FakeWriter(self.0.clone()))
    }

    fn breaks_session(error: &Error) -> bool {
        matches!(error, Error::Source { message, .. } if message == "session lost")
    }
}

impl ClaimSession for FakeSession {
    type Values = ();
    type Rows = Vec<i64>;
    type Unlocker = Infallible;

    async fn claim(&mut self, held: &HashSet<LockKey>, limit: usize) -> Result<Locked<Vec<i64>>> {
        let id = self.id;
        let mut s = self.live()?;
        let candidates: Vec<i64> = s.pending.iter().copied().collect();
        let mut locked = Locked {
            keys: Vec::new(),
            null_identity: Vec::new(),
            rows: Vec::new(),
        };
        for row in candidates {
            if locked.rows.len() == limit {
                break;
            }
            if (s.skip_held && held.contains(&key(row))) || s.locks.contains_key(&key(row)) {
                continue;
            }
            s.locks.insert(key(row), id);
            locked.keys.push(key(row));
            locked.rows.push(row);
            if s.null_identity.contains(&row) {
                locked.null_identity.push(key(row));
            }
        }
        Ok(locked)
    }

    async fn reread(
        &mut self,
        locked: &Locked<Vec<i64>>,
        stamp: &Stamp,
    ) -> Result<Vec<SqlEvent<()>>> {
        let s = self.live()?;
        Ok(locked
            .rows
            .iter()
            .filter(|r| {
                s.pending.contains(r)
                    && !s.null_identity.contains(r)
                    && !s.gone_on_reread.contains(r)
            })
            .map(|&r| Self::event(r, stamp))
            .collect())
    }

    async fn claim_page(
        &mut self,
        _: &HashSet<LockKey>,
        _: usize,
        _: u64,
        _: &Stamp,
    ) -> Result<Page<()>> {
        unreachable!("every test here has a mark-done")
    }

    async fn lease(&mut self, keys: &[LockKey]) -> Result<Vec<LockKey>> {
        let mut s = self.live()?;
        if std::mem::take(&mut s.fail_lease) {
            return Err(Error::Source {
                kind: "fake",
                message: "deadlock".into(),
            });
        }
        let mut got = Vec::new();
        for k in keys {
            if !s.foreign_leases.contains(&k.as_i64()) {
                s.leases.insert(k.as_i64());
                got.push(*k);
            }
        }
        Ok(got)
    }

    async fn unlock(&mut self, keys: &[LockKey]) -> Result<()> {
        let id = self.id;
        let mut s = self.live()?;
        for k in keys {
            if s.locks.get(k) == Some(&id) {
                s.locks.remove(k);
            }
            s.leases.remove(&k.as_i64());
        }
        Ok(())
    }

    async fn relock(&mut self, keys: &[LockKey]) -> Result<HashSet<LockKey>> {
        let id = self.id;
        let mut s = self.live()?;
        s.relock_calls += 1;
        let mut got = HashSet::new();
        for &k in keys {
            if let std::collections::hash_map::Entry::Vacant(free) = s.locks.entry(k) {
                free.insert(id);
                got.insert(k);
            }
        }
        Ok(got)
    }

    async fn count(&mut self) -> Result<Option<u64>> {
        Ok(Some(self.live()?.pending.len() as u64))
    }

    fn unlocker(&self) -> Option<Infallible> {
        None
    }

    fn event_id(key: LockKey) -> String {
        key.as_i64().to_string()
    }
}

impl WriterSession for FakeWriter {
    type Values = ();

    async fn run(self, _: Which, rows: &[SqlHandle<()>]) -> Written<Self> {
        let result = {
            let mut s = self.0.lock().unwrap();
            if s.fail_writes {
                Err(Error::Source {
                    kind: "fake",
                    message: "write failed".into(),
                })
            } else {
                for row in rows {
                    let holder = s.locks.get(&row.key).copied();
                    let live = holder
                        .and_then(|h| s.fences.get(&h))
                        .is_some_and(|f| !f.is_cancelled());
                    if !live {
                        s.unlocked_writes += 1;
                    }
                    s.pending.remove(&row.key.as_i64());
                }
                Ok(())
            }
        };
        Written {
            writer: Some(self),
            parked: Vec::new(),
            result,
        }
    }

    fn is_lost(&self) -> bool {
        false
    }
}

async fn source(rows: std::ops::RangeInclusive<i64>, skip_held: bool) -> (SqlSource<Fake>, Shared) {
    let server = Shared::default();
    {
        let mut s = server.lock().unwrap();
        s.pending = rows.collect();
        s.skip_held = skip_held;
    }
    let config = SqlConfig {
        connection: SqlConnection {
            host: "fake".into(),
            port: 0,
            user: "fake".into(),
            password: Secret::new(""),
            database: "fake".into(),
            params: Vec::new(),
        },
        query: "SELECT id FROM t".into(),
        mark_done: Some(
            Template::parse("UPDATE t SET done = 1 WHERE id = {{id}}", Dialect::Mysql).unwrap(),
        ),
        mark_failed: None,
        restart_quiet: Duration::ZERO,
        lease_ttl: Duration::from_secs(7),
    };
    let source = SqlSource::start(Fake(server.clone()), &config)
        .await
        .unwrap();
    (source, server)
}

fn ids(events: &[SqlEvent<()>]) -> Vec<i64> {
    events.iter().map(|e| e.handle.key.as_i64()).collect()
}

#[tokio::test]
async fn a_claim_keeps_what_still_matches_parks_null_identities_and_unlocks_the_rest() {
    let (mut source, server) = source(1..=5, true).await;
    {
        let mut s = server.lock().unwrap();
        s.gone_on_reread.insert(3);
        s.null_identity.insert(4);
    }
    let events = source.claim(10).await.unwrap();
    assert_eq!(ids(&events), [1, 2, 5]);
    {
        let s = server.lock().unwrap();
        let locked: BTreeSet<i64> = s.locks.keys().map(|k| k.as_i64()).collect();
        assert_eq!(locked, BTreeSet::from([1, 2, 4, 5]), "3 unlocked, 4 parked");
    }
    source.ack(&events).await.unwrap();
    source.flush().await.unwrap();
    let s = server.lock().unwrap();
    assert_eq!(s.pending, BTreeSet::from([3, 4]));
    assert_eq!(s.locks.keys().map(|k| k.as_i64()).collect::<Vec<_>>(), [4]);
}

#[tokio::test]
async fn rows_of_a_lost_session_are_fenced_locked_again_and_not_claimed_twice() {
    let (mut source, server) = source(1..=4, true).await;
    let first = source.claim(2).await.unwrap();
    assert_eq!(ids(&first), [1, 2]);
    kill(&server, 1);
    assert!(
        first
            .iter()
            .all(|e| SqlSource::<Fake>::fence(&e.handle).unwrap().is_cancelled())
    );
    // Another replica took row 2 after the restart.
    server.lock().unwrap().locks.insert(key(2), OTHER);
    let reported = source.claim(10).await.unwrap_err().to_string();
    assert!(reported.contains("claim session was lost"), "{reported}");
    let second = source.claim(10).await.unwrap();
    assert_eq!(
        ids(&second),
        [3, 4],
        "1 is still this replica's, 2 another's"
    );
    source.ack(&first).await.unwrap();
    source.flush().await.unwrap();
    let s = server.lock().unwrap();
    assert_eq!(
        s.pending,
        BTreeSet::from([2, 3, 4]),
        "1 marked done, 2 left to its holder"
    );
    assert_eq!((s.relock_calls, s.unlocked_writes), (1, 0));
    assert_eq!(s.locks.get(&key(1)), None, "released after its COMMIT");
}

#[tokio::test]
async fn a_lost_row_a_new_claim_locked_is_kept_apart_and_settled_with_that_lock() {
    // MySQL's claim cannot skip a list of keys: it locks row 1 again.
    let (mut source, server) = source(1..=2, false).await;
    let first = source.claim(1).await.unwrap();
    kill(&server, 1);
    assert!(source.claim(10).await.is_err(), "the loss is reported once");
    let second = source.claim(10).await.unwrap();
    assert_eq!(ids(&second), [2], "row 1 is not handed out twice");
    source.ack(&first).await.unwrap();
    source.flush().await.unwrap();
    let s = server.lock().unwrap();
    assert_eq!(s.pending, BTreeSet::from([2]));
    assert_eq!(
        (s.relock_calls, s.unlocked_writes),
        (0, 0),
        "the claim's lock was used"
    );
}

#[tokio::test]
async fn released_rows_of_a_lost_session_are_free_again() {
    let (mut source, server) = source(1..=2, true).await;
    let first = source.claim(10).await.unwrap();
    kill(&server, 1);
    source.release(&first).await.unwrap();
    assert!(source.claim(10).await.is_err(), "the loss is reported once");
    let again = source.claim(10).await.unwrap();
    assert_eq!(ids(&again), [1, 2]);
    assert!(again.iter().all(|e| e.handle.stamp.epoch == 2));
}

#[tokio::test]
async fn a_failed_settlement_is_reported_by_the_next_ack_or_flush_and_its_rows_come_back() {
    let (mut source, server) = source(1..=2, true).await;
    let events = source.claim(10).await.unwrap();
    server.lock().unwrap().fail_writes = true;
    source.ack(&events).await.unwrap();
    // Let the settlement finish: the claim absorbs it without failing.
    tokio::task::yield_now().await;
    let pending = source.pending.as_ref().is_some_and(|t| t.is_finished());
    assert!(pending, "the settlement ran");
    let again = source.claim(10).await.unwrap();
    assert_eq!(
        ids(&again),
        [1, 2],
        "nothing was written: the rows were released"
    );
    assert!(source.flush().await.is_err());
    assert!(source.flush().await.is_ok(), "reported once");
}

#[tokio::test]
async fn a_row_another_replica_still_has_a_lease_of_is_unlocked_and_not_handed_out() {
    let (mut source, server) = source(1..=3, true).await;
    server.lock().unwrap().foreign_leases.insert(2);
    let events = source.claim(10).await.unwrap();
    assert_eq!(ids(&events), [1, 3]);
    {
        let s = server.lock().unwrap();
        assert_eq!(s.locks.get(&key(2)), None, "unlocked at once");
        assert_eq!(s.leases, BTreeSet::from([1, 3]));
    }
    assert!(source.leases.contains(&key(1)) && !source.leases.contains(&key(2)));
    source.ack(&events).await.unwrap();
    source.flush().await.unwrap();
    // The next claim absorbs nothing new; the settled rows' leases are gone.
    assert!(server.lock().unwrap().leases.is_empty());
    assert!(!source.leases.contains(&key(1)), "no longer renewed");
}

#[tokio::test(start_paused = true)]
async fn the_keeper_renews_held_leases_and_fences_the_session_when_it_lapses() {
    let (mut source, server) = source(1..=2, true).await;
    let events = source.claim(10).await.unwrap();
    tokio::time::sleep(RENEW_EVERY + Duration::from_millis(10)).await;
    let mut renewed = server.lock().unwrap().renewed.clone();
    renewed.sort_by_key(|k| k.as_i64());
    assert_eq!(renewed, [key(1), key(2)]);
    server.lock().unwrap().fail_renewals = true;
    let fence = SqlSource::<Fake>::fence(&events[0].handle).unwrap().clone();
    // The last good renewal was sent at 1 s: the lapse is at 3 s, seen at
    // the keeper's tick then.
    tokio::time::sleep(RENEW_EVERY).await;
    assert!(!fence.is_cancelled(), "one failed renewal is not a lapse");
    tokio::time::sleep(RENEW_EVERY).await;
    assert!(
        fence.is_cancelled(),
        "fenced {LAPSE:?} after the last good renewal"
    );
    let reported = source.claim(10).await.unwrap_err().to_string();
    assert!(reported.contains("claim session was lost"), "{reported}");
    assert!(
        source.leases.contains(&key(1)),
        "rows still with the pump keep their leases"
    );
}

#[tokio::test]
async fn rows_whose_lease_failed_are_let_go_not_kept_locked() {
    let (mut source, server) = source(1..=2, true).await;
    server.lock().unwrap().fail_lease = true;
    assert!(source.claim(10).await.is_err());
    assert!(server.lock().unwrap().locks.is_empty(), "unlocked");
    assert_eq!(
        ids(&source.claim(10).await.unwrap()),
        [1, 2],
        "and claimed again"
    );
}

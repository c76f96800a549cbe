//! The rules of [`super::next_action`], one scenario per test, with paused tokio time.

use super::*;

const BATCH: usize = 10;
const POLL: Duration = Duration::from_secs(5);

/// A running pump holding nothing, with the gate open.
fn idle() -> PumpView {
    PumpView {
        now: Instant::now(),
        phase: Phase::Running,
        shutdown: false,
        batch: BATCH,
        max_held: 4 + 2 * BATCH,
        queued: 0,
        active: 0,
        done: 0,
        dead: 0,
        cancelled: 0,
        settle_since: None,
        idle_until: None,
        gate_closed: false,
        gate_confirmed: true,
    }
}

fn wait(until: Instant, shutdown: bool, gate: GateWatch) -> Action {
    Action::Wait(Wake {
        until,
        shutdown,
        gate,
    })
}

#[tokio::test(start_paused = true)]
async fn an_empty_claim_waits_the_poll_interval_then_claims_again() {
    let view = idle();
    assert_eq!(next_action(&view), Action::Claim { want: BATCH });
    let idle_until = Instant::now() + POLL;
    let view = PumpView {
        idle_until: Some(idle_until),
        ..view
    };
    assert_eq!(
        next_action(&view),
        wait(idle_until, true, GateWatch::No),
        "nothing to do until the poll interval is over"
    );
    tokio::time::advance(POLL).await;
    let view = PumpView {
        now: Instant::now(),
        ..view
    };
    assert_eq!(next_action(&view), Action::Claim { want: BATCH });
}

#[tokio::test(start_paused = true)]
async fn a_backlog_is_claimed_ahead_up_to_the_hold() {
    let view = PumpView {
        active: 4,
        queued: 9,
        ..idle()
    };
    assert_eq!(
        next_action(&view),
        Action::Claim { want: BATCH },
        "the next batch is claimed while this one is delivered"
    );
    let view = PumpView {
        active: 4,
        queued: 9,
        done: 5,
        settle_since: Some(Instant::now()),
        ..idle()
    };
    assert_eq!(
        next_action(&view),
        Action::Claim { want: 6 },
        "no more than the hold has room for"
    );
    let full = PumpView { queued: 15, ..view };
    assert!(
        matches!(next_action(&full), Action::Acknowledge),
        "a full hold settles"
    );
}

#[tokio::test(start_paused = true)]
async fn delivered_events_wait_for_a_batch_at_most_the_settle_wait() {
    let finished = Instant::now();
    let view = PumpView {
        active: 4,
        queued: BATCH,
        done: 3,
        settle_since: Some(finished),
        ..idle()
    };
    assert_eq!(
        next_action(&view),
        wait(finished + SETTLE_WAIT, true, GateWatch::No),
        "three of a batch of ten wait while deliveries are moving"
    );
    tokio::time::advance(SETTLE_WAIT).await;
    let view = PumpView {
        now: Instant::now(),
        ..view
    };
    assert_eq!(next_action(&view), Action::Acknowledge);
    let full_batch = PumpView {
        now: finished,
        done: BATCH,
        ..view
    };
    assert_eq!(next_action(&full_batch), Action::Acknowledge);
    let still = PumpView {
        now: finished,
        active: 0,
        queued: 0,
        ..view
    };
    assert_eq!(
        next_action(&still),
        Action::Acknowledge,
        "nothing else is moving: no reason to wait"
    );
}

#[tokio::test(start_paused = true)]
async fn settling_goes_release_then_ack_then_dead_letter() {
    let view = PumpView {
        done: BATCH,
        dead: BATCH,
        cancelled: 1,
        settle_since: Some(Instant::now()),
        ..idle()
    };
    assert_eq!(next_action(&view), Action::Release);
    let view = PumpView {
        cancelled: 0,
        ..view
    };
    assert_eq!(next_action(&view), Action::Acknowledge);
    let view = PumpView { done: 0, ..view };
    assert_eq!(next_action(&view), Action::DeadLetter);
}

#[tokio::test(start_paused = true)]
async fn sigterm_drains_within_the_grace_period_then_stops() {
    let running = PumpView {
        active: 4,
        queued: 6,
        shutdown: true,
        ..idle()
    };
    assert_eq!(next_action(&running), Action::BeginDrain);
    let deadline = Instant::now() + Duration::from_secs(20);
    let draining = PumpView {
        phase: Phase::Draining { deadline },
        queued: 0,
        cancelled: 0,
        ..running
    };
    assert_eq!(
        next_action(&draining),
        wait(deadline, false, GateWatch::No),
        "no claim while draining; wake at the end of the grace period"
    );
    let delivered = PumpView {
        done: 1,
        settle_since: Some(Instant::now()),
        ..draining
    };
    assert_eq!(
        next_action(&delivered),
        Action::Acknowledge,
        "a draining pump acknowledges at once"
    );
    tokio::time::advance(Duration::from_secs(20)).await;
    let over = PumpView {
        now: Instant::now(),
        ..draining
    };
    assert_eq!(next_action(&over), Action::CancelDeliveries);
    let cancelled = PumpView {
        phase: Phase::Cancelled,
        ..over
    };
    assert_eq!(
        next_action(&cancelled),
        wait(cancelled.now + LONGEST_WAIT, false, GateWatch::No),
        "the cancelled deliveries come back by themselves"
    );
    let returned = PumpView {
        active: 0,
        cancelled: 4,
        ..cancelled
    };
    assert_eq!(next_action(&returned), Action::Release);
    let empty = PumpView {
        cancelled: 0,
        ..returned
    };
    assert_eq!(next_action(&empty), Action::Stop);
}

#[tokio::test(start_paused = true)]
async fn a_closed_gate_stops_claims_and_is_watched() {
    let closed = PumpView {
        gate_closed: true,
        gate_confirmed: false,
        ..idle()
    };
    assert_eq!(
        next_action(&closed),
        wait(closed.now + LONGEST_WAIT, true, GateWatch::Ready),
        "nothing in flight: probe until the target is ready"
    );
    let busy = PumpView {
        active: 2,
        ..closed
    };
    assert_eq!(
        next_action(&busy),
        wait(busy.now + LONGEST_WAIT, true, GateWatch::Reopened)
    );
    let probed = PumpView {
        gate_closed: false,
        ..closed
    };
    assert_eq!(
        next_action(&probed),
        Action::Claim { want: BATCH },
        "a probe lets one batch try"
    );
    let trying = PumpView {
        active: 2,
        ..probed
    };
    assert!(
        matches!(next_action(&trying), Action::Wait(_)),
        "no second batch until a delivery succeeds"
    );
    let confirmed = PumpView {
        gate_confirmed: true,
        ..trying
    };
    assert_eq!(next_action(&confirmed), Action::Claim { want: BATCH });
    let stopping = PumpView {
        phase: Phase::Cancelled,
        ..busy
    };
    assert_eq!(
        next_action(&stopping),
        wait(stopping.now + LONGEST_WAIT, false, GateWatch::No),
        "a stopping pump does not watch the gate"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_is_retried_after_its_backoff() {
    let retry_at = Instant::now() + Duration::from_millis(100);
    let view = PumpView {
        idle_until: Some(retry_at),
        ..idle()
    };
    assert_eq!(next_action(&view), wait(retry_at, true, GateWatch::No));
    tokio::time::advance(Duration::from_millis(100)).await;
    let view = PumpView {
        now: Instant::now(),
        ..view
    };
    assert_eq!(next_action(&view), Action::Claim { want: BATCH });
}

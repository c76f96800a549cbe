//! The source ceiling every [`Workload`](super::Workload) reports: kipper-poll's own source code
//! claiming and acknowledging the seeded events in batches, with no HTTP in between. One loop
//! for every source, so the ceilings of PostgreSQL, MySQL, Redis and S3 measure the same thing.

use std::time::Instant;

use kipper_poll::source::Source;

/// Claims and acknowledges `batch` events at a time until `source` is empty, then flushes what
/// the source settles in the background. Fails unless exactly `seeded` events were settled
/// (`unit` names them in that error: rows, items, objects). Returns events per second.
pub async fn measure<S: Source>(
    source: &mut S,
    batch: usize,
    seeded: u64,
    unit: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut done = 0u64;
    loop {
        let events = source.claim(batch).await?;
        if events.is_empty() {
            source.flush().await?;
            break;
        }
        done += events.len() as u64;
        source.ack(&events).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        done == seeded,
        "the ceiling run settled {done} of {seeded} {unit}"
    );
    Ok(done as f64 / seconds)
}

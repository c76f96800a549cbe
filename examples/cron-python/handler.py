# A cron-triggered function (the Functions page's test-run example): the CronJob runs
# kipper-shim in batch mode, which calls main() once and exits 0, or 1 on a failure.
#   KIPPER_MODE=batch KIPPER_TRIGGER=test cargo run --release -p kipper-shim -- examples/cron-python/handler.py
import datetime
import os


def main():
    is_test = os.environ.get("KIPPER_TRIGGER") == "test"
    if is_test:
        print("test run, skipping outbound notifications")
    # ... the periodic work goes here; raise (or return {"error": ...}) to fail the run.
    return {"ran_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "test": is_test}

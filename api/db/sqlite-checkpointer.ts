// WAL checkpoints of the SQLite read model, off the event loop. better-sqlite3 runs on the API's event loop, and its
// automatic checkpoint (every 1,000 WAL pages, on the commit that crosses the mark) copies the WAL into the database
// file and fsyncs it inside that commit: 20-80 ms with reads waiting (bench:api, the start of a projector burst). The
// API's connection does not checkpoint; a worker thread with a connection of its own does, PASSIVE (it never waits
// for readers or the writer) every CHECKPOINT_INTERVAL_MS; when the database closes, the API's connection, the last
// one, makes the final checkpoint itself. If the thread ends unasked, the API's connection checkpoints by itself again.
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

const CHECKPOINT_INTERVAL_MS = 500;

/** The worker's code (CommonJS, run with `eval`: nothing for a loader to transform). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const SQLite = require(workerData.driver);
const closed = new Int32Array(workerData.closed);
const db = new SQLite(workerData.file);
db.pragma("busy_timeout = 1000");
let failures = 0;
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
    failures = 0;
  } catch (error) {
    // One failed checkpoint is retried at the next interval; a connection that keeps failing ends the thread.
    if (++failures >= workerData.maxFailures) throw new Error("checkpoints keep failing: " + error.message);
  }
}, workerData.intervalMs);
parentPort.once("message", () => {
  clearInterval(timer);
  db.close();
  Atomics.store(closed, 0, 1);
  Atomics.notify(closed, 0);
});
`;

/** How long closing waits for the worker to let go of the file. */
const STOP_WAIT_MS = 2_000;

export interface Checkpointer {
  /**
   * Ends the worker's connection, waiting (synchronously, at most STOP_WAIT_MS) until it has: the caller's connection,
   * closed next as the last one, makes the final checkpoint and removes the WAL, so nothing touches the files after.
   */
  stopSync(): void;
}

/** Checkpoints failing this many times in a row end the worker (onStopped is told). */
const MAX_FAILURES = 20;

export interface CheckpointerOptions {
  intervalMs?: number;
  /**
   * Called once if the worker ends without being asked to (it could not open the file, or its checkpoints kept
   * failing): the caller's connection should checkpoint by itself again, or the WAL grows until the process ends.
   */
  onStopped?: (error: Error) => void;
}

/** Starts checkpointing `file` from a worker thread; the caller's connection should set wal_autocheckpoint = 0. */
export function startCheckpointer(file: string, options: CheckpointerOptions = {}): Checkpointer {
  const { intervalMs = CHECKPOINT_INTERVAL_MS, onStopped } = options;
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const closed = new SharedArrayBuffer(4);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { file, driver, intervalMs, closed, maxFailures: MAX_FAILURES },
  });
  worker.unref();
  let stopped = false;
  let failure: Error | undefined;
  worker.on("error", (error) => {
    failure = error;
  });
  worker.once("exit", (code) => {
    if (!stopped) onStopped?.(failure ?? new Error(`the checkpoint thread exited with code ${code}`));
  });
  return {
    stopSync() {
      if (stopped) return;
      stopped = true;
      worker.postMessage("stop");
      Atomics.wait(new Int32Array(closed), 0, 0, STOP_WAIT_MS);
      void worker.terminate();
    },
  };
}

// Progress bars on stderr (cli-progress): one per phase (capture, compress, fork), fed by the event stream.
// Without a terminal they print a plain line per update instead, so logs and tests see them too.
import { MultiBar, Presets, type SingleBar } from "cli-progress";

export interface Bars {
  phase(name: string, total: number): Phase;
  stop(): void;
}

export interface Phase {
  update(done: number, total?: number, note?: string): void;
  finish(note: string): void;
}

export function createBars(enabled: boolean): Bars {
  if (!enabled) {
    const silent: Phase = { update() {}, finish() {} };
    return { phase: () => silent, stop() {} };
  }
  // Made at the first phase, so a command that fails before any has nothing to clear on stderr.
  let multibar: MultiBar | undefined;
  const bars = () => {
    multibar ??= new MultiBar(
      {
        stream: process.stderr,
        format: "{phase} |{bar}| {percentage}% {note}",
        hideCursor: true,
        noTTYOutput: true,
        notTTYSchedule: 250,
        clearOnComplete: false,
        stopOnComplete: false,
      },
      Presets.shades_classic,
    );
    return multibar;
  };
  return {
    phase(name, total) {
      const bar: SingleBar = bars().create(Math.max(total, 1), 0, { phase: name.padEnd(8), note: "" });
      return {
        update(done, newTotal, note = "") {
          if (newTotal !== undefined) bar.setTotal(Math.max(newTotal, 1));
          bar.update(done, { note });
        },
        finish(note) {
          bar.update(bar.getTotal(), { note });
        },
      };
    },
    stop() {
      multibar?.stop();
      multibar = undefined;
    },
  };
}

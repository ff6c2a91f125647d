import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QmpError } from "../errors.ts";
import { killProcess, waitForExit } from "../process.ts";
import { QmpClient, type QmpEvent } from "./qmp.ts";

let dir: string;
let socket: string;
let pid: number;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "snapfleet-qmp-"));
  socket = path.join(dir, "qmp.sock");
  // A machine-less QEMU starts instantly and speaks real QMP.
  await promisify(execFile)("qemu-system-x86_64", [
    ...["-machine", "none", "-nodefaults", "-display", "none"],
    ...["-qmp", `unix:${socket},server=on,wait=off`, "-pidfile", path.join(dir, "qemu.pid"), "-daemonize"],
  ]);
  pid = Number.parseInt(await readFile(path.join(dir, "qemu.pid"), "utf8"), 10);
});

afterAll(async () => {
  if (pid) {
    killProcess(pid, "SIGCONT");
    killProcess(pid, "SIGKILL");
    await waitForExit(pid, 5_000);
  }
  await rm(dir, { recursive: true, force: true });
});

describe("QmpClient", () => {
  it("negotiates capabilities and runs commands", async () => {
    const qmp = await QmpClient.connect(socket);
    const status = await qmp.execute<{ status: string }>("query-status");
    expect(status.status).toBe("running");
    await qmp.close();
  });

  it("rejects a failing command with the QMP error class", async () => {
    const qmp = await QmpClient.connect(socket);
    const error = await qmp.execute("no-such-command").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QmpError);
    expect((error as QmpError).errorClass).toBe("CommandNotFound");
    // The connection stays usable after an error.
    await expect(qmp.execute("query-status")).resolves.toBeTruthy();
    await qmp.close();
  });

  it("surfaces events to the caller", async () => {
    const events: QmpEvent[] = [];
    const qmp = await QmpClient.connect(socket, { onEvent: (event) => events.push(event) });
    await qmp.execute("stop");
    await qmp.execute("cont");
    await expect.poll(() => events.map((event) => event.event)).toEqual(expect.arrayContaining(["STOP", "RESUME"]));
    await qmp.close();
  });

  it("times out a command QEMU does not answer, and fails pending commands on close", async () => {
    const qmp = await QmpClient.connect(socket);
    killProcess(pid, "SIGSTOP");
    try {
      await expect(qmp.execute("query-status", undefined, 200)).rejects.toThrow(/timed out/);
      const pending = qmp.execute("query-status", undefined, 60_000);
      await qmp.close();
      await expect(pending).rejects.toBeInstanceOf(QmpError);
    } finally {
      killProcess(pid, "SIGCONT");
    }
    await expect(qmp.execute("query-status")).rejects.toBeInstanceOf(QmpError);
  });

  it("times out a connect to a socket that never greets", async () => {
    const silentSocket = path.join(dir, "silent.sock");
    const server: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(silentSocket, resolve));
    try {
      await expect(QmpClient.connect(silentSocket, { connectTimeoutMs: 200 })).rejects.toThrow(/timed out/);
    } finally {
      server.close();
    }
  });

  it("fails fast when nothing listens on the socket", async () => {
    await expect(QmpClient.connect(path.join(dir, "missing.sock"))).rejects.toBeInstanceOf(QmpError);
  });
});

/** A minimal QMP client: JSON lines over a unix socket, one command in flight per id, timeouts everywhere. */
import { createConnection, type Socket } from "node:net";
import { QmpError } from "../errors.ts";

export const DEFAULT_QMP_TIMEOUT_MS = 10_000;

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /** Bounds the socket connect plus the greeting and capabilities handshake. */
  connectTimeoutMs?: number;
  /** Default per-command timeout. */
  commandTimeoutMs?: number;
  /** Called for every asynchronous event QEMU sends; events are dropped otherwise. */
  onEvent?: (event: QmpEvent) => void;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

type QmpMessage = {
  QMP?: unknown;
  id?: number;
  return?: unknown;
  error?: { class: string; desc: string };
  event?: string;
};

export class QmpClient {
  private buffer = "";
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedError: Error | null = null;
  private readonly closed: Promise<void>;
  private resolveGreeting!: () => void;
  private rejectGreeting!: (error: Error) => void;
  private readonly greeting = new Promise<void>((resolve, reject) => {
    this.resolveGreeting = resolve;
    this.rejectGreeting = reject;
  });

  private constructor(
    private readonly socket: Socket,
    private readonly commandTimeoutMs: number,
    private readonly onEvent?: (event: QmpEvent) => void,
  ) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.failAll(new QmpError("QMP connection closed"));
        resolve();
      });
    });
    socket.on("error", (error) =>
      this.failAll(new QmpError(`QMP socket error: ${error.message}`, undefined, undefined, { cause: error })),
    );
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_QMP_TIMEOUT_MS;
    const client = new QmpClient(
      createConnection(socketPath),
      options.commandTimeoutMs ?? DEFAULT_QMP_TIMEOUT_MS,
      options.onEvent,
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new QmpError(`QMP connect to ${socketPath} timed out after ${connectTimeoutMs} ms`)),
        connectTimeoutMs,
      );
    });
    try {
      await Promise.race([client.greeting, timeout]);
      await client.execute("qmp_capabilities", undefined, connectTimeoutMs);
      return client;
    } catch (error) {
      client.socket.destroy();
      throw error instanceof QmpError
        ? error
        : new QmpError(`QMP connect to ${socketPath} failed: ${(error as Error).message}`, undefined, undefined, {
            cause: error,
          });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one command and resolves with its `return` value; rejects with QmpError on error or timeout. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.commandTimeoutMs): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpError(`QMP command ${command} timed out after ${timeoutMs} ms`, command));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      const message = args ? { execute: command, arguments: args, id } : { execute: command, id };
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Closes the connection; pending commands fail. Safe to call twice. */
  async close(): Promise<void> {
    if (!this.socket.destroyed) this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 1_000);
    await this.closed;
    clearTimeout(timer);
  }

  /** Resolves once QEMU closes the connection (for example after `quit`). */
  waitClosed(): Promise<void> {
    return this.closed;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline = this.buffer.indexOf("\n");
    while (newline >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.onLine(line);
      newline = this.buffer.indexOf("\n");
    }
  }

  private onLine(line: string): void {
    let message: QmpMessage;
    try {
      message = JSON.parse(line) as QmpMessage;
    } catch {
      return; // QEMU only sends JSON; ignore a torn line rather than crash the worker
    }
    if ("QMP" in message) {
      this.resolveGreeting();
      return;
    }
    if (message.event) {
      this.onEvent?.(message as QmpEvent);
      return;
    }
    if (typeof message.id !== "number") return;
    const pending = this.pending.get(message.id);
    if (!pending) return;
    this.pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.error) {
      pending.reject(
        new QmpError(`QMP ${pending.command} failed: ${message.error.desc}`, pending.command, message.error.class),
      );
    } else {
      pending.resolve(message.return);
    }
  }

  private failAll(error: Error): void {
    this.closedError ??= error;
    this.rejectGreeting(error);
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(
        new QmpError(`QMP ${pending.command}: ${error.message}`, pending.command, undefined, { cause: error }),
      );
      this.pending.delete(id);
    }
  }
}

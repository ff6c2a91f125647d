#!/usr/bin/env node
// The `snapfleet` binary (package.json "bin"): runs the TypeScript CLI through tsx, as the service itself runs.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");

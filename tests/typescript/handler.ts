// A durable handler written with the official TypeScript SDK, run against the crate's emulator
// by tests/emulator/typescript_sdk.rs (through invoke.ts). The same workflow as
// tests/python/handler.py, so both tests expect the same result and the same operations.
//
// It covers steps, a map, a parallel of two branches, a wait, a callback answered through the
// emulator, and a final result padded to `pad_to` bytes of JSON: past the 6 MiB - 50 byte
// response limit the SDK checkpoints it as an EXECUTION SUCCEED update and returns an empty
// Result.
//
// TypeScript run as it is by Node >= 22.6 (type stripping): only erasable syntax here, no enums
// or namespaces, so there is no compile step.

import {
  type DurableContext,
  withDurableExecution,
} from "@aws/durable-execution-sdk-js";

interface Input {
  items: number[];
  name: string;
  pad_to?: number;
}

export const handler = withDurableExecution(
  async (event: Input, context: DurableContext) => {
    const { items, name } = event;
    const count = await context.step("count", async () => items.length);
    const doubled = (
      await context.map("double-all", items, async (ctx, item, index) =>
        ctx.step(`double-${index}`, async () => item * 2),
      )
    ).getResults();
    const both = (
      await context.parallel<number | string>("two-branches", [
        async (ctx) =>
          ctx.step("sum", async () => items.reduce((a, b) => a + b, 0)),
        async (ctx) => ctx.step("greet", async () => `hello ${name}`),
      ])
    ).getResults();
    await context.wait("pause", { seconds: 3 });
    // The callback's id is what an outside system would answer with; the test answers it
    // through the emulator by the operation's id instead.
    const [approved] = await context.createCallback("approval");
    const approval = await approved;
    const finish = await context.step("finish", async () => `${name}:${approval}`);
    const summary = {
      count,
      doubled,
      parallel: both,
      callback: approval,
      finish,
    };
    const padTo = event.pad_to ?? 0;
    const overhead = JSON.stringify({ summary, padding: "" }).length;
    const padding = padTo > overhead ? "x".repeat(padTo - overhead) : "";
    return { summary, padding };
  },
);

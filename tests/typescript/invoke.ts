// Runs handler.ts's handler once, as the Lambda runtime would: the invocation event (JSON) from
// the file named by the first argument and a minimal Lambda context. Writes the handler's
// output (JSON) to the file named by the second argument: stdout is left to the SDK's logs.
//
// The checkpoint client is the AWS SDK for JavaScript's LambdaClient, which the durable SDK
// creates itself; AWS_ENDPOINT_URL_LAMBDA aims it at the emulator.

import { readFileSync, writeFileSync } from "node:fs";
import { handler } from "./handler.ts";

const [eventPath, outputPath] = process.argv.slice(2);
if (!eventPath || !outputPath) {
  process.stderr.write("usage: invoke.ts EVENT.json OUTPUT.json\n");
  process.exit(2);
}

// Only the fields the SDK reads matter (the request id for its logs, the remaining time);
// the rest are there so the shape is a Lambda context's.
const budgetMs = 120_000;
const deadline = Date.now() + budgetMs;
const context = {
  callbackWaitsForEmptyEventLoop: false,
  functionName: "typescript-sdk-test",
  functionVersion: "$LATEST",
  invokedFunctionArn:
    "arn:aws:lambda:us-east-1:123456789012:function:typescript-sdk-test",
  memoryLimitInMB: "128",
  awsRequestId: "typescript-sdk-test",
  logGroupName: "/aws/lambda/typescript-sdk-test",
  logStreamName: "typescript-sdk-test",
  getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  done: () => {},
  fail: () => {},
  succeed: () => {},
};

const event = JSON.parse(readFileSync(eventPath, "utf8"));
const output = await handler(event, context);
writeFileSync(outputPath, JSON.stringify(output));
// The LambdaClient's kept-alive connections would hold the process open; the answer is
// written, so this invocation is over, as it is when Lambda freezes the environment.
process.exit(0);

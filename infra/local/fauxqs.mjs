// Launcher for fauxqs (SQS and S3 emulator) in the local stack, bound to one interface only.
//
// fauxqs's startFauxqs() listens on 0.0.0.0, hard-coded. The local stack binds loopback only (no
// unauthenticated queue or bucket reachable from the network), so before fauxqs is imported every
// net.Server.listen gets its host forced to --listen (default 127.0.0.1). SIGTERM/SIGINT close the
// server through fauxqs's own stop(), which closes its SQLite database cleanly.
//
//   node fauxqs.mjs --port 4566 [--listen 127.0.0.1] [--data-dir DIR] [--s3-storage-dir DIR]
//                   [--region us-east-1] [--log]

import net from "node:net";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: process.env.FAUXQS_PORT ?? "4566" },
    listen: { type: "string", default: "127.0.0.1" },
    "data-dir": { type: "string" },
    "s3-storage-dir": { type: "string" },
    region: { type: "string", default: "us-east-1" },
    log: { type: "boolean", default: false },
  },
  strict: true,
});

const listenHost = args.listen;
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listen(...listenArgs) {
  const [first] = listenArgs;
  if (first !== null && typeof first === "object" && first.path == null) {
    listenArgs[0] = { ...first, host: listenHost };
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, cb]): drop any host given, put ours
    const rest = listenArgs.slice(1);
    if (typeof rest[0] === "string") rest.shift();
    listenArgs = [first, listenHost, ...rest];
  }
  return originalListen.apply(this, listenArgs);
};

const { startFauxqs } = await import("fauxqs");

// fauxqs 2.4.1 with --data-dir: ChangeMessageVisibility(VisibilityTimeout=0) writes NULL into the
// NOT NULL approximate_receive_count column, throws after taking the message out of flight and
// before putting it back in its group, so the message is lost until a restart (and the client's retry
// gets MessageNotInflight). SQS makes it receivable again at once, keeping its receive count: the
// write below clears only the in-flight columns. tests/infra/test_local_queue.py pins this.
const { PersistenceManager } = await import(new URL("./persistence.js", import.meta.resolve("fauxqs")));
if (typeof PersistenceManager?.prototype?.updateMessageReady === "function") {
  PersistenceManager.prototype.updateMessageReady = function updateMessageReady(messageId) {
    this.readyStatement ??= this.db.prepare(
      "UPDATE sqs_messages SET receipt_handle = NULL, visibility_deadline = NULL WHERE message_id = ?",
    );
    this.readyStatement.run(messageId);
  };
} else {
  console.warn("fauxqs: PersistenceManager.updateMessageReady not found; visibility-0 fix not applied");
}

const server = await startFauxqs({
  port: Number.parseInt(args.port, 10),
  logger: args.log,
  defaultRegion: args.region,
  ...(args["data-dir"] ? { dataDir: args["data-dir"] } : {}),
  ...(args["s3-storage-dir"] ? { s3StorageDir: args["s3-storage-dir"] } : {}),
});
console.log(
  `fauxqs listening on ${server.address}` +
    (args["data-dir"] ? ` (queues in ${args["data-dir"]})` : " (in memory)") +
    (args["s3-storage-dir"] ? ` (objects in ${args["s3-storage-dir"]})` : ""),
);

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  // a long poll in progress must not hold the stop up: the database is closed first (preClose)
  setTimeout(() => process.exit(0), 3000).unref();
  try {
    await server.stop(); // fastify close -> fauxqs's preClose hooks close the SQLite database
    console.log(`fauxqs stopped on ${signal}`);
    process.exit(0);
  } catch (err) {
    console.error("fauxqs: stop failed", err);
    process.exit(1);
  }
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));

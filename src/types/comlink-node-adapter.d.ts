// comlink ships node-adapter.mjs with its types in node-adapter.d.ts, which NodeNext resolution
// does not pair with an .mjs file; this restates the one signature troupe uses.
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import type { Endpoint } from 'comlink'
  import type { MessagePort } from 'node:worker_threads'
  export default function nodeEndpoint(port: MessagePort): Endpoint
}

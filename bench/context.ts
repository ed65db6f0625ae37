import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads'
import { pino } from 'pino'
import { ActorSystem } from '../src/index.js'

/** Compiled bench modules sit beside their fixtures; under tsx they are .ts. */
export const fixture = (name: string): URL => new URL(`./fixtures/${name}${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url)

export function startBenchSystem(workers = 2): Promise<ActorSystem> {
  return ActorSystem.start({ workers, logger: pino({ level: 'warn' }) })
}

/** A bare worker thread and a MessagePort to it: the raw baseline's far side. */
export async function bareWorker(control: { mode: 'echo' } | { mode: 'count'; expect: number }): Promise<{ port: MessagePort; close(): Promise<number> }> {
  const worker = new Worker(fixture('baseline-worker'))
  const { port1, port2 } = new MessageChannel()
  worker.postMessage({ ...control, port: port2 }, [port2])
  return { port: port1, close: () => (port1.close(), worker.terminate()) }
}

/** Listens on a free loopback port: the server's base URL. */
export function listen(server: Server): Promise<string> {
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)))
}

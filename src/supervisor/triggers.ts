import type { Logger } from 'pino'
import { watchConfigFile } from '../config/index.js'
import type { RunningStack } from './stack.js'

/**
 * What reloads a running stack besides POST /v1/admin/reload: SIGHUP, and (unless `watchFile` is
 * false, `--no-watch`) a change of the config file's content. Reloads queue in the supervisor.
 */
export function serveReloads(stack: RunningStack, log: Logger, watchFile: boolean): { close(): void } {
  let closed = false
  const reload = (trigger: 'signal' | 'watch'): void => {
    if (closed) {
      log.info({ trigger }, 'shutting down: the reload is ignored')
      return
    }
    stack.reload(trigger).catch(error => log.error({ err: error, trigger }, 'reload failed'))
  }
  // Kept after close: a SIGHUP during the drain must not take Node's default action, exit.
  process.on('SIGHUP', () => reload('signal'))
  const { source, sha256 } = stack.supervisor.inspect()
  const watcher = watchFile ? watchConfigFile(source, () => reload('watch'), { initialHash: sha256, onError: error => log.warn({ err: error, config: source }, 'watching the config file failed') }) : undefined
  return {
    close() {
      closed = true
      watcher?.close()
    },
  }
}

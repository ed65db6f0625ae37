import { watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { sha256Of } from './load.js'

export interface ConfigWatch {
  close(): void
}

export interface WatchOptions {
  /** Events closer together than this are one change: an editor's save is several. */
  readonly debounceMs?: number
  /** The hash of the content the watch starts from (what runs): content that hashes the same as the last seen is no change. */
  readonly initialHash: string
  readonly onError?: (error: unknown) => void
}

const DEFAULT_DEBOUNCE_MS = 25

/**
 * Calls `onChange` when the config file's content really changes. It watches the file itself
 * (writes in place) and its directory (an editor that saves by rename, a Kubernetes ConfigMap
 * whose symlinks are swapped: the path is re-read as given, so the new target is what counts),
 * waits for the events to settle, and compares the content's sha256 with the content it saw
 * last: a touch, a rename to the same content, or a save of the same text does nothing, while
 * any new content (a revert to what ran before included) reloads.
 */
export function watchConfigFile(file: string, onChange: () => void, options: WatchOptions): ConfigWatch {
  const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS
  const name = basename(file)
  let timer: NodeJS.Timeout | undefined
  let closed = false
  let fileWatcher: FSWatcher | undefined
  let lastSeen = options.initialHash

  const check = async (): Promise<void> => {
    timer = undefined
    if (closed) return
    watchFile() // a rename replaced the inode the file watcher followed
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (error) {
      // Mid-swap, or deleted: the next event (or none) decides; a reload would refuse it anyway.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') options.onError?.(error)
      return
    }
    const hash = sha256Of(text)
    if (closed || hash === lastSeen) return
    lastSeen = hash
    onChange()
  }
  const changed = (): void => {
    if (closed) return
    clearTimeout(timer)
    timer = setTimeout(() => void check(), debounceMs)
  }
  const watchFile = (): void => {
    fileWatcher?.close()
    try {
      fileWatcher = watch(file, { persistent: false }, changed)
      fileWatcher.on('error', () => fileWatcher?.close())
    } catch {
      fileWatcher = undefined // not there right now; the directory watch sees it come back
    }
  }
  watchFile()
  const dirWatcher = watch(dirname(file), { persistent: false }, (_event, entry) => {
    // A ConfigMap swaps `..data`, not the file's own name: any entry may be the one behind it.
    if (entry === null || entry === name || entry.startsWith('..')) changed()
  })
  dirWatcher.on('error', error => options.onError?.(error))
  return {
    close() {
      closed = true
      clearTimeout(timer)
      fileWatcher?.close()
      dirWatcher.close()
    },
  }
}

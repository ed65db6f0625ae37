// npm run docs: regenerates docs/config.md from the stack.yaml schema.
import { writeFileSync } from 'node:fs'
import { renderConfigDocs } from '../src/config/index.js'

const target = new URL('../../docs/config.md', import.meta.url)
writeFileSync(target, renderConfigDocs())
process.stdout.write(`wrote ${target.pathname}\n`)

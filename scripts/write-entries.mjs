// tsc keeps the source tree under dist/ (dist/src, dist/actors, dist/bench), because src/ and
// actors/ import each other by relative path. The package's two entry points are promised at
// dist/main.js (CLI) and dist/index.js (library); these one-line modules put them there.
import { writeFileSync } from 'node:fs'

const entries = {
  'dist/main.js': "import './src/main.js'\n",
  'dist/index.js': "export * from './src/index.js'\n",
  'dist/index.d.ts': "export * from './src/index.js'\n",
}
for (const [path, text] of Object.entries(entries)) writeFileSync(path, text)

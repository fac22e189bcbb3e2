// The dashboard's single-page app: Preact + uPlot, built into dist/web by `npm run build`
// and served by the HTTP server at / (src/http/dashboard.ts). JSX is compiled by Vite's
// own transformer for Preact (no Babel, no plugin).
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));

export default {
  root,
  base: './',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 300,
  },
};

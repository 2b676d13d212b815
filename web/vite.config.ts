// The console is built into web/dist and embedded in the promolens binary (host/src/api/console.rs).
import { defineConfig } from 'vite';

export default defineConfig({
  // Served at the root of `promolens serve`.
  base: '/',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Stable names inside the hashed ones, so a rebuild of the same sources is byte-identical.
    sourcemap: false,
    reportCompressedSize: true,
  },
});

/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` serves the page with hot reload on 5174 beside a running
// `scripts/demo --keep-running`, whose web server (5173) answers the dev
// configuration and sign-in, and whose edge allows this origin.
const DEMO_WEB = process.env.DEMO_WEB_URL ?? 'http://127.0.0.1:5173';

export default defineConfig(({ mode }) => ({
  plugins: [react()],
  // Source maps for sandbox builds only: a production build ships no
  // source, so not even the sandbox branches' text.
  build: { sourcemap: mode !== 'production' },
  server: {
    host: '127.0.0.1',
    port: 5174,
    strictPort: true,
    proxy: { '/dev-config.json': DEMO_WEB, '/dev/': DEMO_WEB },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['src/test-setup.ts'],
    restoreMocks: true,
  },
}));

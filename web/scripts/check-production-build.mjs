// A production build never references the sandbox: builds the page as
// production does (`vite build`, .env.production) into a scratch directory
// and fails if any file names the Stripe.js stand-in, the dev sign-in or
// the dev configuration, or if the real Stripe.js is not what it loads.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = fileURLToPath(new URL('..', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'credits-web-production-'));
try {
  execFileSync('npx', ['vite', 'build', '--mode', 'production', '--outDir', out, '--emptyOutDir'], {
    cwd: web,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const files = readdirSync(out, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
  const text = files.map((file) => [file, readFileSync(file, 'utf8')]);
  const forbidden = ['/dev/sign-in', 'dev-config.json', 'credits.dev.uid', 'Development sign-in', '/v3/', 'sandboxStandIn', 'pk_test_'];
  const found = [];
  for (const [file, content] of text) {
    for (const needle of forbidden) if (content.includes(needle)) found.push(`${file}: ${needle}`);
  }
  if (files.some((file) => file.endsWith('.map'))) found.push('source maps in a production build');
  if (!text.some(([, content]) => content.includes('https://js.stripe.com'))) {
    found.push('the real Stripe.js (https://js.stripe.com) is not referenced');
  }
  if (found.length > 0) {
    console.error(`the production build references the sandbox:\n  ${found.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`production build: ${files.length} files, no sandbox reference, Stripe.js from js.stripe.com`);
} finally {
  rmSync(out, { recursive: true, force: true });
}

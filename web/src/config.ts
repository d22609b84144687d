// Where the page finds the edge and Stripe. A sandbox build (development,
// the demo and the browser tests) reads them at start from
// /dev-config.json, served by `demo --web`; a production build has them
// built in from VITE_* variables and never references the sandbox.

export interface AppConfig {
  /** The edge-gateway's origin, e.g. https://api.example.com. */
  apiBaseUrl: string;
  stripePublishableKey: string;
  /** The sandbox's Stripe.js stand-in, loaded before loadStripe (sandbox builds only). */
  stripeJsUrl: string | null;
  sandbox: boolean;
}

export const SANDBOX = import.meta.env.VITE_SANDBOX === 'true';

let loaded: Promise<AppConfig> | null = null;

export function loadConfig(): Promise<AppConfig> {
  loaded ??= SANDBOX ? fetchDevConfig() : Promise.resolve(builtInConfig());
  return loaded;
}

async function fetchDevConfig(): Promise<AppConfig> {
  const response = await fetch('/dev-config.json');
  if (!response.ok) throw new Error(`/dev-config.json answered ${response.status}`);
  const json = (await response.json()) as Omit<AppConfig, 'sandbox'>;
  return { ...json, sandbox: true };
}

function builtInConfig(): AppConfig {
  return {
    apiBaseUrl: import.meta.env.VITE_API_BASE_URL ?? '',
    stripePublishableKey: import.meta.env.VITE_STRIPE_PUBLISHABLE_KEY ?? '',
    stripeJsUrl: null,
    sandbox: false,
  };
}

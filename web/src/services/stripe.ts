// Stripe.js for the page. A sandbox build first loads the sandbox's
// Stripe.js stand-in (real Stripe.js cannot be reached here), which sets
// window.Stripe, so loadStripe uses it; a production build lets loadStripe
// fetch the real Stripe.js from js.stripe.com.

import type { Stripe } from '@stripe/stripe-js';
import { loadStripe } from '@stripe/stripe-js/pure';

import { type AppConfig, SANDBOX } from '../config';

let stripe: Promise<Stripe | null> | null = null;

function loadScript(src: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.async = true;
    script.onload = () => resolve();
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.appendChild(script);
  });
}

export function getStripe(config: AppConfig): Promise<Stripe | null> {
  stripe ??= (async () => {
    if (SANDBOX && config.stripeJsUrl) await loadScript(config.stripeJsUrl);
    return loadStripe(config.stripePublishableKey);
  })();
  return stripe;
}

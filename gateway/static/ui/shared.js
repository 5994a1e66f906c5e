// What the screens share: leaving a screen (timers, streams) and the API's lists.

import { api } from "./api.js";

let cleanup = null;

// A screen registers what must stop when the operator goes elsewhere.
export function onLeave(fn) {
  cleanup = fn;
}

export function leave() {
  if (cleanup) {
    const fn = cleanup;
    cleanup = null;
    fn();
  }
}

export async function sourcesAndIntegrations() {
  const [sources, integrations] = await Promise.all([
    api.get("/v1/admin/sources"),
    api.get("/v1/admin/integrations"),
  ]);
  return { sources: sources.sources, integrations: integrations.integrations };
}

// The consent categories offered as checkboxes: the usual ones plus any already in use.
export const COMMON_CATEGORIES = ["advertising", "analytics", "marketing", "functional"];

export function knownCategories(integrations) {
  const names = new Set(COMMON_CATEGORIES);
  for (const integration of integrations) {
    for (const name of integration.consent_categories) names.add(name);
  }
  return [...names];
}

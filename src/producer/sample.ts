/**
 * Sample events of the five demo types, with realistic payloads. Deterministic for a
 * given `random` (pass a seeded one in tests).
 */
export const SAMPLE_EVENT_TYPES = ['user_created', 'order_placed', 'payment_processed', 'product_viewed', 'order_shipped'] as const;
export type SampleEventType = (typeof SAMPLE_EVENT_TYPES)[number];

const FIRST = ['Ada', 'Grace', 'Linus', 'Margaret', 'Ken', 'Barbara', 'Dennis', 'Frances', 'Edsger', 'Radia'];
const LAST = ['Lovelace', 'Hopper', 'Torvalds', 'Hamilton', 'Thompson', 'Liskov', 'Ritchie', 'Allen', 'Dijkstra', 'Perlman'];
const COUNTRIES = ['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA', 'AU', 'NL'];
const PRODUCTS = [
  { sku: 'SKU-1001', name: 'Mechanical keyboard', price: 129.0, category: 'electronics' },
  { sku: 'SKU-1002', name: 'USB-C hub', price: 39.99, category: 'electronics' },
  { sku: 'SKU-2001', name: 'Espresso beans 1kg', price: 24.5, category: 'grocery' },
  { sku: 'SKU-3001', name: 'Trail running shoes', price: 119.95, category: 'sports' },
  { sku: 'SKU-4001', name: 'Desk lamp', price: 45.0, category: 'home' },
  { sku: 'SKU-5001', name: 'Notebook, dotted', price: 12.99, category: 'office' },
];
const CARRIERS = ['UPS', 'DHL', 'FedEx', 'USPS'];
const METHODS = ['card', 'paypal', 'apple_pay', 'bank_transfer'];

export function sampleEvent(random: () => number = Math.random): { type: SampleEventType; payload: Record<string, unknown> } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const userId = `usr_${int(1, 50_000)}`;
  const orderId = `ord_${int(1, 10_000_000)}`;
  const type = pick(SAMPLE_EVENT_TYPES);
  switch (type) {
    case 'user_created': {
      const first = pick(FIRST);
      const last = pick(LAST);
      return {
        type,
        payload: { user_id: userId, email: `${first}.${last}${int(1, 999)}@example.com`.toLowerCase(), name: `${first} ${last}`, country: pick(COUNTRIES), marketing_opt_in: random() < 0.4 },
      };
    }
    case 'order_placed': {
      const items = Array.from({ length: int(1, 4) }, () => {
        const p = pick(PRODUCTS);
        return { sku: p.sku, quantity: int(1, 3), unit_price: p.price };
      });
      const total = Math.round(items.reduce((s, i) => s + i.quantity * i.unit_price, 0) * 100) / 100;
      return { type, payload: { order_id: orderId, user_id: userId, items, total, currency: 'USD' } };
    }
    case 'payment_processed':
      return {
        type,
        payload: { payment_id: `pay_${int(1, 10_000_000)}`, order_id: orderId, amount: Math.round(random() * 50_000) / 100, currency: 'USD', method: pick(METHODS), status: random() < 0.97 ? 'succeeded' : 'declined' },
      };
    case 'product_viewed': {
      const p = pick(PRODUCTS);
      return { type, payload: { user_id: userId, sku: p.sku, category: p.category, price: p.price, referrer: pick(['search', 'home', 'email', 'ad']), session_id: `ses_${int(1, 1_000_000)}` } };
    }
    case 'order_shipped':
      return { type, payload: { order_id: orderId, carrier: pick(CARRIERS), tracking_number: `1Z${int(100_000_000, 999_999_999)}`, estimated_delivery_days: int(1, 7) } };
  }
}

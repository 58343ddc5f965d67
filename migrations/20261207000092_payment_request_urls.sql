-- The page a customer pays a payment request on (Stripe Checkout, Paynow), from
-- `PaymentRequestSent` (issue 16). Absent for M-Pesa, whose prompt goes to the phone.
ALTER TABLE payment_requests ADD COLUMN payment_url text;

"""The booking engine: events and seats, admission, hold expiry, payment and confirmation."""

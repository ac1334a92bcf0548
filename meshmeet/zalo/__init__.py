"""The commune's Zalo Official Account bridge (issue 17): sans-IO API requests and outcomes, the
webhook signature, the durable outbox/inbox and the credentials file. The trio driver is
meshmeet/node/zalo_service.py; the webhook route meshmeet/web/zalo_routes.py."""

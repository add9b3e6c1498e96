"""Notifications: the outbox every domain queues a message in (``outbox``), delivered by ``alerts``.

Below the domains that decide something a person must hear about (payments, lifecycle, alerts),
so none of them has to import another to queue a message.
"""

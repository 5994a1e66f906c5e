"""TikTok's event rules: the mapping of hit event names to TikTok's, and the reasons an event
is set aside instead of sent (the tables TIKTOK.md restates for v1.3)."""

from __future__ import annotations

from collections.abc import Mapping

PAGE_VIEW = "PageView"
SEARCH = "Search"
MISSING_VALUE_OR_CURRENCY = "missing_value_or_currency"
# TikTok refuses a CRM event without the lead it is about, and matches offline events only on
# email or phone: such events are dead-lettered with these reasons instead of being sent.
MISSING_LEAD_ID = "missing_lead_id"
MISSING_EMAIL_OR_PHONE = "missing_email_or_phone"

# The seed's table: hit event name -> TikTok event name (legacy names; see CURRENT_EVENT_NAMES).
EVENT_MAPPING: Mapping[str, str] = {
    "Product Added": "AddToCart",
    "Order Completed": "CompletePayment",
    "Product Purchased": "CompletePayment",
    "Checkout Started": "InitiateCheckout",
    "Product Viewed": "ViewContent",
    "Products Searched": "Search",
    "Product Added to Wishlist": "AddToWishlist",
    "Signed Up": "CompleteRegistration",
    "Lead Generated": "SubmitForm",
    "Order Placed": "PlaceAnOrder",
    "Payment Info Entered": "AddPaymentInfo",
    "Subscription Created": "Subscribe",
    "Callback Started": "Contact",
    "Form Submitted": "SubmitForm",
    "Product Clicked": "ClickButton",
    "Download Link Clicked": "Download",
}

# TikTok's current standard list renamed these two; an integration opts in.
CURRENT_EVENT_NAMES: Mapping[str, str] = {"CompletePayment": "Purchase", "SubmitForm": "Lead"}

# Without a value and a currency TikTok cannot attribute a purchase: such an event is not sent.
PURCHASE_EVENTS = frozenset({"CompletePayment", "Purchase"})

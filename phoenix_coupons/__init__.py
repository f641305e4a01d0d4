"""Phoenix Coupons: coupon service of the Phoenix gamification platform."""

__version__ = "0.1.0"

//! Delivery receipts (SMPP 3.4 Appendix B).

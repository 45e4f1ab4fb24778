"""Admission: the AdmissionReview wire format and the pure validate step behind the webhook."""

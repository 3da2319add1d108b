"""JSON Schemas shipped with mtlsc: imported Gateway API CRDs and hand-written core kinds."""

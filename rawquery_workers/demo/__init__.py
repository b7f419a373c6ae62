"""The bundled sample API behind `rq demo`."""

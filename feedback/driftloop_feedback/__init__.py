"""driftloop's feedback side: accept ground truth (``api``) and join it with logged predictions
(``join``) into labelled examples on the ``driftloop.labelled`` topic."""

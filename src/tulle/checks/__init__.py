"""`tulle check`: health checks as data (``catalog``), a generic runner with deadlines and
dependencies (``runner``), pure evaluators (``certificates``, ``traffic``), the API calls
(``client``) and the rendering (``render``)."""

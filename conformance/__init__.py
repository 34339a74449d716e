"""What joins the model to an implementation: harnesses that run code as the
model's threads and map its state onto the model's variables, and trace
replay on them.  ``c_build`` compiles the document's C managers (``csrc/``)
against the kernel-API shim; ``c_harness`` drives them through a trace."""

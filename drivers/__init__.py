"""Input drivers, one folder each; :mod:`drivers.registry` names them.

This package imports nothing, so loading a driver's config never loads a driver.
"""

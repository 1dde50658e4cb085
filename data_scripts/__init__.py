"""Converters from public anomaly-detection data sets to the MVTec AD folder layout.

Each module is a command-line script (``python data_scripts/<name>.py --help``) and can
also be imported (``from data_scripts import aitex; aitex.convert(source, output)``).
"""

"""Studies: ablation settings, the results of record, grid execution, the workbook runner."""

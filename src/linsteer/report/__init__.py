"""What a person looks at: figures (diagnostics, steering, scans), what the report shows, and
the HTML with its JSON and CSV copies."""

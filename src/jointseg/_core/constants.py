"""Default element keys, column names and shared constants."""

DEFAULT_CS = "global"

IMAGE_KEY = "morphology"
POINTS_KEY = "transcripts"
NUCLEI_KEY = "nuclei"
CELL_LABELS_KEY = "cell_labels"
CELL_SHAPES_KEY = "cell_boundaries"
TABLE_KEY = "table"
RNA_DENSITY_KEY = "rna_density"

REGION_KEY = "region"
INSTANCE_KEY = "cell_id"
#: Column added to the points with each transcript's cell id. Not ``cell_id``: Xenium and MERSCOPE
#: transcripts already carry the vendor's own ``cell_id``, which jointseg must never overwrite.
POINTS_CELL_ID = "jg_cell_id"
UNS_KEY = "jointseg"

#: Pixel convention: pixel centres sit at integer coordinates (as in scikit-image contours and
#: spatialdata's ``to_polygons``). A point at pixel coordinate ``x`` belongs to pixel ``round(x)``.
PIXEL_CENTRE_OFFSET = 0.0

#: Genes matching this pattern (vendor controls) are excluded from counts and density maps.
CONTROL_GENE_PATTERN = (
    r"^(NegControl|BLANK|Blank-|NegPrb|UnassignedCodeword|DeprecatedCodeword|antisense_|SystemControl|Intergenic)"
)
